"""Every controller of the pinned Flux release, run as the repo configures it (embedded, host
processes): the repo's own flags and gates with their sources, notification-controller's kinds,
and image automation pushing only to the drill's own Git server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tagregistry import tag_registry

pytestmark = pytest.mark.integration

TOP = Path(__file__).resolve().parents[2]


def drill(repo: Path, out: Path, tmp_path: Path, *extra: str, profile: str = "fast",
          timeout: int = 600) -> tuple[subprocess.CompletedProcess[str], dict]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DRDRILL_STATE_DIR": str(tmp_path / "state"),
           "DRDRILL_FLUX_PROFILE": profile}
    res = subprocess.run([sys.executable, "-m", "harness.cli", "drill", "--repo", str(repo),
                          "--cluster", "clusters/dev", "--report-dir", str(out), *extra],
                         env=env, capture_output=True, text=True, cwd=TOP, timeout=timeout)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() \
        else {}
    return res, report


def test_the_repos_own_flags_and_gates_run_and_are_reported(fixture_repo, tmp_path):
    repo = fixture_repo("flux-settings")
    res, report = drill(repo, tmp_path / "r", tmp_path, profile="repo")
    assert res.returncode == 0, res.stdout + res.stderr
    flux = report["settings"]["flux"]
    assert flux["profile"] == "repo"
    rows = {(s["controller"], s["arg"]): s["source"] for s in flux["settings"]}
    ks = "kustomize-controller"
    assert rows[(ks, "--concurrent=3")] == "clusters/dev/flux-system/kustomization.yaml:10"
    assert rows[(ks, "--requeue-dependency=3s")] == \
        "clusters/dev/flux-system/kustomization.yaml:13"
    assert rows[(ks, "--feature-gates=CancelHealthCheckOnNewRevision=true")] == \
        "clusters/dev/flux-system/gates-patch.yaml:3"
    assert "source-watcher" in rows[(ks, "--feature-gates=ExternalArtifact=true")]
    assert rows[("source-watcher", "--concurrent=10")] == "Flux default"
    flags = flux["flags"][ks]
    assert "--concurrent=3" in flags and "--requeue-dependency=3s" in flags
    gates = [f for f in flags if f.startswith("--feature-gates=")]
    assert len(gates) == 1 and "ExternalArtifact=true" in gates[0] \
        and "CancelHealthCheckOnNewRevision=true" in gates[0]
    assert any(o["kind"] == "Kustomization" and o["name"] == "apps" and o["ready"]
               for o in report["objects"])
    assert "kustomization.yaml:10" in (tmp_path / "r" / "index.html").read_text()


def test_notification_kinds_converge_with_notification_controller(fixture_repo, tmp_path):
    repo = fixture_repo("notifications")
    res, report = drill(repo, tmp_path / "r", tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "notification-controller" in report["settings"]["flux"]["controllers"]
    receivers = [o for o in report["objects"] if o["kind"] == "Receiver"]
    assert receivers and all(o["ready"] for o in receivers)
    # The other controllers post their events to it.
    flags = report["settings"]["flux"]["flags"]["kustomize-controller"]
    assert any(f.startswith("--events-addr=http://127.0.0.1:") for f in flags)


def test_image_automation_scans_picks_and_pushes_to_the_drills_git_server(fixture_repo,
                                                                         tmp_path):
    repo = fixture_repo("image-automation")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    with tag_registry({"app": ["0.9.0", "1.0.0", "1.2.0", "latest"]}) as host:
        (inputs / "registry.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: registry\n"
            f"  namespace: flux-system\ndata:\n  REGISTRY: {host}\n")
        res, report = drill(repo, tmp_path / "r", tmp_path, "--inputs", str(inputs))
    assert res.returncode == 0, res.stdout + res.stderr
    objects = {(o["kind"], o["name"]): o for o in report["objects"] if o["round"] == 2}
    policy = objects[("ImagePolicy", "app")]
    assert policy["ready"] and "1.2.0" in json.dumps(policy)
    assert objects[("ImageUpdateAutomation", "apps")]["ready"]
    # The automation pushed the update to its own branch of the drill's server, and only there.
    git = report["settings"]["git_server"]
    assert git["branches"] == ["image-updates", "main"] and git["pushes"] >= 1, git
