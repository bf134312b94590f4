"""The bad-input matrix: each bad input gives a clear error (what, where, the fix) within
seconds, a `broken` verdict where a report applies, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.gc import run_processes

pytestmark = pytest.mark.integration
TOP = Path(__file__).resolve().parents[2]


def _fake_tool(folder: Path, name: str, says: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text(f"#!/bin/sh\necho '{says}'\n")
    tool.chmod(0o755)


def _setup(case: str, tmp_path: Path, fixture_repo, sample_repo) -> tuple[list[str], dict]:
    """argv (after `drdrill drill`) and extra environment for one row of the matrix."""
    empty_cache = {"DRDRILL_CACHE_DIR": str(tmp_path / "empty-cache"), "PATH": "/usr/bin:/bin"}
    if case == "not-a-git-repo":
        (tmp_path / "plain").mkdir()
        return ["--repo", str(tmp_path / "plain")], {}
    if case == "cluster-path-missing":
        return ["--repo", str(sample_repo), "--cluster", "clusters/nope"], {}
    if case == "cluster-path-is-a-file":
        return ["--repo", str(sample_repo), "--cluster", "clusters/homelab/apps.yaml"], {}
    if case == "inputs-invalid-yaml":
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "x.yaml").write_text("kind: Secret\nmetadata: [oops\n")
        return ["--repo", str(sample_repo), "--inputs", str(tmp_path / "in")], {}
    if case == "nodes-zero":
        return ["--repo", str(sample_repo), "--nodes", "0"], {}
    if case.startswith("broken-"):
        return ["--repo", str(fixture_repo(case)), "--cluster", "clusters/dev"], {}
    if case == "missing-manual-input":
        return ["--repo", str(sample_repo)], {}
    if case == "inputs-not-a-folder":
        return ["--repo", str(sample_repo), "--inputs", str(tmp_path / "nope")], {}
    if case == "unknown-provider":
        return ["--repo", str(sample_repo), "--provider", "nope"], {}
    if case == "unknown-scenario":
        return ["--repo", str(sample_repo), "--scenario", "nope"], {}
    if case == "missing-tool-no-go":
        return ["--repo", str(sample_repo)], {**empty_cache, "DRDRILL_GO": "/nonexistent/go"}
    if case == "builds-disabled":
        return ["--repo", str(sample_repo)], {**empty_cache, "DRDRILL_ALLOW_BUILD": "0"}
    if case == "wrong-tool-version":
        _fake_tool(tmp_path / "tools", "etcd", "etcd Version: 3.4.0")
        return ["--repo", str(sample_repo), "--tools-dir", str(tmp_path / "tools"),
                "--inputs", str(TOP / "scenarios/inputs/homelab")], {}
    if case == "repo-is-a-url":
        return ["--repo", "https://github.com/example/fleet"], {}
    if case == "requeue-dependency-without-unit":
        return ["--repo", str(sample_repo), "--requeue-dependency", "2"], {}
    if case == "report-dir-unwritable":
        return ["--repo", str(sample_repo), "--inputs", str(TOP / "scenarios/inputs/homelab"),
                "--report-dir", "/proc/nope/r"], {}
    if case == "report-dir-is-a-file":
        (tmp_path / "file").write_text("x")
        return ["--repo", str(fixture_repo("broken-cycle")), "--cluster", "clusters/dev",
                "--report-dir", str(tmp_path / "file" / "report")], {}
    raise AssertionError(case)


# case -> (exit code, words the message must hold, report expected)
MATRIX = {
    "not-a-git-repo": (2, ["not a Git repository", "plain", "git init"], True),
    "cluster-path-missing": (2, ["clusters/nope", "does not exist", "clusters/homelab"], True),
    "broken-missing-path": (2, ["./apps/development", "clusters/dev/apps.yaml",
                                "Kustomization/flux-system/apps"], True),
    "broken-cycle": (2, ["dependsOn cycle", "flux-system/a", "flux-system/c"], True),
    "broken-invalid-yaml": (2, ["invalid YAML at line", "apps/dev/podinfo/deployment.yaml",
                                "Kustomization/flux-system/apps"], True),
    "broken-unknown-dep": (2, ["flux-system/database", "clusters/dev/apps.yaml"], True),
    "missing-manual-input": (2, ["cluster-secrets", "Kustomization/flux-system/apps",
                                 "--inputs"], True),
    "inputs-not-a-folder": (2, ["is not a folder"], True),
    "cluster-path-is-a-file": (2, ["is a file, not a folder", "clusters/homelab"], True),
    "inputs-invalid-yaml": (2, ["invalid YAML at line", "x.yaml"], True),
    "nodes-zero": (2, ["must be at least 1"], False),
    # typos: one argparse error naming the choices, no run folder, no report
    "unknown-provider": (2, ["invalid choice: 'nope'", "embedded", "kind"], False),
    "unknown-scenario": (2, ["invalid choice: 'nope'", "full-rebuild", "drift"], False),
    "repo-is-a-url": (2, ["is a URL", "git clone https://github.com/example/fleet"], False),
    "requeue-dependency-without-unit": (2, ["not a Go duration", "did you mean 2s?"], False),
    # found in seconds, before anything is provisioned (no report can be written there)
    "report-dir-unwritable": (2, ["cannot create report folder /proc/nope/r",
                                  "--report-dir"], False),
    # Preflight resolves kustomize alone first: the repo is checked before any cluster binary.
    "missing-tool-no-go": (2, ["v5.8.1", "kustomize", "--tools-dir", "Go"], True),
    "builds-disabled": (2, ["kustomize", "v5.8.1", "DRDRILL_ALLOW_BUILD"], True),
    "wrong-tool-version": (2, ["etcd", "3.4.0", "v3.6.16"], True),
    "report-dir-is-a-file": (2, ["file", "report"], False),
}


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_bad_input(case, tmp_path, fixture_repo, sample_repo):
    rc_want, words, has_report = MATRIX[case]
    args, extra_env = _setup(case, tmp_path, fixture_repo, sample_repo)
    if "--report-dir" not in args:
        args += ["--report-dir", str(tmp_path / "report")]
    env = {**os.environ, "DRDRILL_STATE_DIR": str(tmp_path / "state"), **extra_env}
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "harness.cli", "drill", *args], env=env,
                         cwd=TOP, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    said = res.stdout + res.stderr
    assert took < 20, f"{case} took {took:.1f}s"
    assert res.returncode == rc_want, said
    for word in words:
        assert word in said, f"{word!r} missing from:\n{said}"
    assert "Traceback" not in said
    if has_report:
        report = json.loads((tmp_path / "report" / "report.json").read_text())
        assert report["verdict"] == "broken"
        for word in words:
            assert word in report["error"], f"{word!r} missing from the report's error"
        assert not [p for p in report["phases"] if p["name"] == "provision"]
        assert not run_processes()[0].get(report["run_id"]), "processes left behind"
    state = tmp_path / "state"
    assert not state.exists() or not any(state.iterdir()), "run folder left behind"
