"""A drill on a repo that needs an unreachable remote ends soon after Flux's first failed
fetch (not at the timeout), names the object, the URL and Flux's error, and its report lists
every object seen with what it waited on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TOP = Path(__file__).resolve().parents[2]


def test_unreachable_remote_fails_fast_and_reports_every_object(fixture_repo, tmp_path):
    repo = fixture_repo("unreachable-remote")
    out = tmp_path / "report"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DRDRILL_STATE_DIR": str(tmp_path / "state")}
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "harness.cli", "drill", "--repo", str(repo),
                          "--cluster", "clusters/dev", "--timeout", "300",
                          "--report-dir", str(out)], env=env, capture_output=True, text=True,
                         cwd=TOP, timeout=600)
    elapsed = time.monotonic() - started
    log = res.stdout + res.stderr
    # A remote the drill cannot reach is the drill's environment, not the repo: broken.
    assert res.returncode == 2, log
    assert "GitRepository/flux-system/upstream" in res.stdout
    assert "http://127.0.0.1:9/upstream.git" in res.stdout and "connection refused" in res.stdout
    # The first failed fetch shows on the progress line; the drill ends within 60 s of it.
    first = next(float(m.group(1)) for line in log.splitlines()
                 if "GitOperationFailed" in line and (m := re.match(r"\[\s*([\d.]+)s\]", line)))
    stopped = next(float(m.group(1)) for line in log.splitlines()
                   if "drill stopped" in line and (m := re.match(r"\[\s*([\d.]+)s\]", line)))
    assert stopped - first < 60, log
    assert elapsed < 240, log
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "broken"
    assert "remote http://127.0.0.1:9/upstream.git is unreachable" in json.dumps(report)
    objects = {o["kind"] + "/" + o["namespace"] + "/" + o["name"]: o for o in report["objects"]}
    upstream = objects["GitRepository/flux-system/upstream"]
    assert not upstream["ready"] and upstream["reason"] == "GitOperationFailed"
    assert upstream["url"] == "http://127.0.0.1:9/upstream.git"
    assert any(c["type"] == "Ready" for c in upstream["conditions"])
    assert "source GitRepository/flux-system/upstream" in \
        objects["Kustomization/flux-system/upstream-apps"]["waiting_on"]
    assert "dependency" in objects["Kustomization/flux-system/apps"]["waiting_on"]
    markdown = (out / "report.md").read_text()
    assert "Not ready when the drill stopped" in markdown and "GitOperationFailed" in markdown
    assert "http://127.0.0.1:9/upstream.git" in json.dumps(report["external_dependencies"])
