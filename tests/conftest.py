"""Shared helpers: fixture repos become real Git repositories in a temp folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# drdrill's own suite drills with drill-only tuning (a 2 s --requeue-dependency) to keep .ci/run
# short; tests of the repo's own settings ask for profile "repo" explicitly.
os.environ.setdefault("DRDRILL_FLUX_PROFILE", "fast")

TOP = Path(__file__).resolve().parent.parent
FIXTURE_REPOS = Path(__file__).resolve().parent / "data" / "repos"
GIT_ENV = {"GIT_AUTHOR_NAME": "drill", "GIT_AUTHOR_EMAIL": "drill@example.invalid",
           "GIT_COMMITTER_NAME": "drill", "GIT_COMMITTER_EMAIL": "drill@example.invalid"}


def git_commit_tree(src_dirs: list[Path], dest: Path, *, base: Path | None = None) -> str:
    """Copy `src_dirs` (relative to `base` when given) into `dest`, git init + commit; -> SHA."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in src_dirs:
        target = dest / (src.relative_to(base) if base else Path())
        shutil.copytree(src, target, dirs_exist_ok=True)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True, env=env)
    subprocess.run(["git", "-C", str(dest), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(dest), "commit", "-qm", "fixture"], check=True, env=env)
    return subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], check=True, env=env,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def fixture_repo(tmp_path):
    """`fixture_repo("chain3")` -> Path of a committed Git copy of tests/data/repos/chain3."""
    def make(name: str) -> Path:
        dest = tmp_path / name
        git_commit_tree([FIXTURE_REPOS / name], dest)
        return dest
    return make


@pytest.fixture
def sample_repo(tmp_path) -> Path:
    """A committed Git copy of this project's sample Flux repo (clusters/, infrastructure/,
    apps/, charts/), independent of whether the checkout's own changes are committed."""
    dest = tmp_path / "sample"
    git_commit_tree([TOP / d for d in ("clusters", "infrastructure", "apps", "charts")], dest,
                    base=TOP)
    return dest


def sample_inputs() -> list[dict]:
    """The sample repo's manual inputs (cluster-secrets, the SOPS age key sops-age)."""
    from harness.kube import load_yaml_docs

    return [doc for path in sorted((TOP / "scenarios" / "inputs" / "homelab").glob("*.yaml"))
            for doc in load_yaml_docs(path)]


def age_identity() -> str:
    """A fresh, valid age X25519 identity (AGE-SECRET-KEY-1...), as age-keygen makes."""
    charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

    def polymod(values: list[int]) -> int:
        gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
        chk = 1
        for v in values:
            b = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ v
            for i in range(5):
                chk ^= gen[i] if ((b >> i) & 1) else 0
        return chk

    hrp = "age-secret-key-"
    data, acc, bits = [], 0, 0
    for byte in os.urandom(32):
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    pm = polymod([*expanded, *data, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return (hrp + "1" + "".join(charset[d] for d in data + checksum)).upper()


def planted_secrets() -> tuple[str, list[str]]:
    """Every secret form the harness handles, with fresh markers: (text, markers). A marker
    showing up anywhere a drill writes means a redaction hole."""
    import base64

    m = [f"planted{i}x{os.urandom(5).hex()}" for i in range(14)]
    b64 = [base64.b64encode(v.encode()).decode() for v in m[:2]]
    age = age_identity()
    text = "\n".join([
        "apiVersion: v1", "kind: Config", "users:", "- name: admin", "  user:",
        f"    client-certificate-data: {b64[0]}", f"    client-key-data: {b64[1]}",
        f"    token: {m[2]}",
        f"-----BEGIN RSA PRIVATE KEY-----\n{m[3]}\n-----END RSA PRIVATE KEY-----",
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{m[4]}\n-----END OPENSSH PRIVATE KEY-----",
        f"Authorization: Bearer {m[5]}",
        f"K3S_TOKEN=K10{m[6]}::server:{m[7]}",
        f"TOKEN={m[8]}",
        f"SOPS_AGE_KEY={age}",
        f"  enc: {m[9]}",
        f"data: ENC[AES256_GCM,data:{m[10]},iv:{m[11]}=,tag:{m[12]}==,type:str]",
        f"password: {m[13]}",
    ])
    return text, [*m, *b64, age]
