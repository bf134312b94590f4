"""Lab hosts for the container tests: a Debian rootfs built with debootstrap, imported into
Docker, and run as containers with sshd on a port published on 127.0.0.1 only.

No image can be pulled here, so the image is built from Debian's packages and cached by a
content hash of the recipe below (change the recipe and a new image is built). Every container
carries the `drdrill.dev/run-id` label, so a sweep by label removes what a killed run left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from harness.gc import OWNER_LABEL
from harness.images.rootfs import (
    Debootstrap,
    debootstrap_rootfs,
    docker_import,
    file_lock,
    write_files,
)
from harness.procs import owner_token

RUN_ID_LABEL = "drdrill.dev/run-id"
IMAGE_REPO = "drdrill-lab-host"

# The recipe: everything that decides what the image contains. Its hash names the image.
SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("openssh-server", "ca-certificates", "iproute2", "procps")
INIT = """#!/bin/sh
# Container entrypoint: sshd in the foreground. The tests put the host key and the client's
# authorized key in place before the container starts; an image never carries a host key.
set -e
mkdir -p /run/sshd
key=/etc/ssh/ssh_host_ed25519_key
[ -s $key ] || ssh-keygen -q -t ed25519 -N '' -f $key
exec /usr/sbin/sshd -D -e -o HostKey=/etc/ssh/ssh_host_ed25519_key \\
    -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \\
    -o PermitRootLogin=prohibit-password -o UseDNS=no -o MaxStartups=50:30:100 \\
    -o AllowTcpForwarding=yes -o ClientAliveInterval=10
"""
RECIPE_VERSION = 1


def recipe() -> dict[str, object]:
    return {"version": RECIPE_VERSION, "suite": SUITE, "variant": VARIANT,
            "packages": list(PACKAGES), "init": INIT}


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def image_tag() -> str:
    return f"{IMAGE_REPO}:{recipe_hash()}"


def _docker(*args: str, check: bool = True, input_bytes: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", *args], capture_output=True, check=check, input=input_bytes,
                          timeout=timeout)


def docker_available() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "the docker CLI is not on PATH"
    try:
        res = _docker("version", "-f", "{{.Server.Version}}", check=False, timeout=15)
    except subprocess.TimeoutExpired:
        return False, "the Docker engine did not answer within 15s"
    if res.returncode != 0:
        return False, ("no Docker engine answers (run .ci/docker-up): "
                       + res.stderr.decode(errors="replace").strip()[:200])
    if shutil.which("debootstrap") is None and not image_exists(image_tag()):
        return False, "debootstrap is not installed (apt-get install debootstrap)"
    return True, res.stdout.decode().strip()


def image_exists(tag: str) -> bool:
    return _docker("image", "inspect", tag, check=False).returncode == 0


def ensure_image(cache_dir: Path, log: Path | None = None) -> tuple[str, float]:
    """The lab-host image tag, building it once per recipe; -> (tag, seconds spent building)."""
    tag = image_tag()
    if image_exists(tag):
        return tag, 0.0
    with file_lock(cache_dir / "locks" / f"lab-host-{recipe_hash()}.lock"):
        if image_exists(tag):  # another test session built it while we waited
            return tag, 0.0
        started = time.monotonic()
        _build(tag, cache_dir, log or cache_dir / "lab-host-build.log")
        return tag, time.monotonic() - started


def _build(tag: str, cache_dir: Path, log: Path) -> None:
    """debootstrap (the rootfs is cached by harness.images.rootfs, shared with the kind node
    image's machinery), then the entrypoint on a copy, imported into Docker."""
    spec = Debootstrap(suite=SUITE, variant=VARIANT, packages=PACKAGES)
    rootfs = debootstrap_rootfs(spec, cache_dir / "images", log)
    work = Path(tempfile.mkdtemp(prefix="lab-host-", dir=cache_dir))
    try:
        root = work / "rootfs"
        subprocess.run(["cp", "-a", f"{rootfs}/.", str(root)], check=True)
        (root / ".complete").unlink(missing_ok=True)
        write_files(root, {"usr/local/sbin/lab-host-init": (INIT, 0o755)})
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()  # every container gets its own host key
        docker_import(root, tag, log=log, changes=[
            'CMD ["/usr/local/sbin/lab-host-init"]', "EXPOSE 22",
            f"LABEL drdrill.dev/recipe={recipe_hash()}"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- keys -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyPair:
    private: Path
    public_line: str
    """`ssh-ed25519 AAAA... comment`"""


def make_keypair(path: Path, comment: str) -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH).decode()
    return KeyPair(path, f"{pub} {comment}")


# --- hosts ----------------------------------------------------------------------------------

@dataclass
class LabHost:
    name: str
    container: str
    port: int
    host_key: KeyPair

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {' '.join(self.host_key.public_line.split()[:2])}"


MANUAL_LABEL = "drdrill.dev/lab-set"
"""Hosts made by `up` for a manual drill: not a run's, so `drdrill gc` leaves them to `down`."""


def start_host(*, tag: str, run_id: str, name: str, client_pub: str, workdir: Path,
               manual: bool = False) -> LabHost:
    """Create a container with sshd (host key and authorized key put in before it starts)."""
    cname = f"drdrill-{run_id}-{name}".lower()
    host_key = make_keypair(workdir / f"{name}-host-key", f"{name}-host")
    seed = workdir / f"{name}-seed"
    (seed / "root/.ssh").mkdir(parents=True, mode=0o700)
    (seed / "root/.ssh/authorized_keys").write_text(client_pub + "\n")
    (seed / "root/.ssh/authorized_keys").chmod(0o600)
    (seed / "etc/ssh").mkdir(parents=True)
    shutil.copyfile(host_key.private, seed / "etc/ssh/ssh_host_ed25519_key")
    (seed / "etc/ssh/ssh_host_ed25519_key").chmod(0o600)
    (seed / "etc/ssh/ssh_host_ed25519_key.pub").write_text(host_key.public_line + "\n")
    labels = ([f"{MANUAL_LABEL}={run_id}"] if manual else
              [f"{RUN_ID_LABEL}={run_id}", f"{OWNER_LABEL}={owner_token()}"])
    _docker("create", "--name", cname, "--hostname", name,
            *[arg for label in labels for arg in ("--label", label)],
            "--label", "drdrill.dev/role=lab-host",
            "-p", "127.0.0.1::22", "--memory", "3g", tag)
    try:
        tar = subprocess.run(["tar", "-C", str(seed), "--numeric-owner", "--owner=0",
                              "--group=0", "-c", "."], capture_output=True, check=True)
        _docker("cp", "-", f"{cname}:/", input_bytes=tar.stdout)
        _docker("start", cname)
        port = int(_docker("port", cname, "22/tcp").stdout.decode().split(":")[-1].strip()
                   .splitlines()[0].split(":")[-1])
    except BaseException:
        _docker("rm", "-f", cname, check=False)
        raise
    return LabHost(name, cname, port, host_key)


def wait_sshd(host: LabHost, timeout_s: float = 20) -> None:
    """Until sshd sends its banner (the container starts in well under a second)."""
    import socket

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", host.port), timeout=2) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    logs = _docker("logs", host.container, check=False).stderr.decode(errors="replace")
    raise RuntimeError(f"sshd in {host.container} did not answer: {last}\n{logs[-2000:]}")


def remove_host(host: LabHost) -> None:
    _docker("rm", "-f", "-v", host.container, check=False)


def exec_in(host: LabHost, *cmd: str) -> str:
    """stdout of a command in the host container (for assertions; not the harness's path)."""
    res = _docker("exec", host.container, *cmd, check=False)
    return res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")


def fingerprint_of(host: LabHost) -> str:
    """`SHA256:...` of the host key the test gave the container."""
    import base64

    blob = base64.b64decode(host.host_key.public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def container_logs(host: LabHost) -> str:
    res = _docker("logs", host.container, check=False)
    return res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")


def run_ids_with_prefix(prefix: str) -> set[str]:
    """Run ids (label values) of containers and networks whose run id starts with `prefix`."""
    ids: set[str] = set()
    fmt = '{{.Label "' + RUN_ID_LABEL + '"}}'
    for args in (("ps", "-a"), ("network", "ls")):
        res = _docker(*args, "--filter", f"label={RUN_ID_LABEL}", "--format", fmt, check=False)
        ids |= {r for r in res.stdout.decode().split() if r.startswith(prefix)}
    return ids


def containers_with_label(run_id: str) -> list[str]:
    res = _docker("ps", "-a", "-q", "--filter", f"label={RUN_ID_LABEL}={run_id}", check=False)
    return res.stdout.decode().split()


def networks_with_label(run_id: str) -> list[str]:
    res = _docker("network", "ls", "-q", "--filter", f"label={RUN_ID_LABEL}={run_id}",
                  check=False)
    return res.stdout.decode().split()


def up(folder: Path, names: tuple[str, ...] = ("host-a", "host-b")) -> Path:
    """Start lab-host containers for a manual `nox -s drill-hardware`; -> the inventory, whose
    first host is the primary and the others the spare pool (recover_to: spare)."""
    import secrets

    cache = Path(os.environ.get("DRDRILL_CACHE_DIR") or Path.home() / ".cache" / "drdrill")
    tag, _ = ensure_image(cache)
    folder.mkdir(parents=True, exist_ok=True)
    run_id = f"lab-{secrets.token_hex(3)}"
    (folder / "run-id").write_text(run_id)
    client = make_keypair(folder / "id_ed25519", "drdrill-lab")
    hosts = [start_host(tag=tag, run_id=run_id, name=n, client_pub=client.public_line,
                        workdir=folder, manual=True) for n in names]
    for h in hosts:
        wait_sshd(h)
    (folder / "known_hosts").write_text("".join(h.known_hosts_line + "\n" for h in hosts))
    entry = "  - {{name: {}, address: 127.0.0.1, port: {}}}\n"
    inventory = folder / "inventory.yaml"
    inventory.write_text(
        "# Lab hosts in local containers (tests/container/labhost.py up)\n"
        "distribution: embedded\nrecover_to: spare\n"
        f"defaults: {{user: root, key: {client.private}, known_hosts: known_hosts}}\n"
        "hosts:\n" + entry.format(hosts[0].name, hosts[0].port)
        + "spare:\n" + "".join(entry.format(h.name, h.port) for h in hosts[1:]))
    return inventory


def down(folder: Path) -> list[str]:
    run_id = (folder / "run-id").read_text().strip()
    names = _docker("ps", "-a", "-q", "--filter", f"label={MANUAL_LABEL}={run_id}",
                    check=False).stdout.decode().split()
    if names:
        _docker("rm", "-f", "-v", *names)
    return names


if __name__ == "__main__":
    # python -m tests.container.labhost [build | up DIR | down DIR]
    import sys

    cmd = sys.argv[1] if len(sys.argv) > 1 else "build"
    if cmd == "build":
        cache = Path(os.environ.get("DRDRILL_CACHE_DIR") or Path.home() / ".cache" / "drdrill")
        tag, took = ensure_image(cache)
        print(f"{tag} ({f'built in {took:.0f}s' if took else 'cached'})")
    elif cmd == "up":
        print(up(Path(sys.argv[2])))
    elif cmd == "down":
        print("removed:", " ".join(down(Path(sys.argv[2]))) or "nothing")
    else:
        sys.exit("usage: python -m tests.container.labhost [build | up DIR | down DIR]")
