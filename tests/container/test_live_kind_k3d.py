"""Full drills on real kind / k3d clusters: `nox -s drill-kind`, `nox -s drill-k3d`.

They run wherever the CLI, a Docker engine and the images are available (a user's CI). They
skip, saying why, where clusters cannot be created: on machines without registry access the
node image (kindest/node, rancher/k3s) and the Flux images must be preloaded into Docker, and
DRDRILL_LIVE_CLUSTERS=1 says they are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from harness.config import Config
from harness.providers.kind import check_docker
from harness.runner import DrillOptions, new_run_id, run_drill
from tests.container import labhost as lh

pytestmark = pytest.mark.container


def _can_create(cli: str, image_repo: str) -> None:
    if shutil.which(cli) is None:
        pytest.skip(f"the {cli} CLI is not on PATH")
    try:
        check_docker()
    except Exception as exc:  # any reason is a skip reason here
        pytest.skip(f"no Docker engine: {exc}")
    if os.environ.get("DRDRILL_LIVE_CLUSTERS") == "1":
        return
    local = subprocess.run(["docker", "image", "ls", "-q", image_repo], capture_output=True,
                           text=True, check=False).stdout.split()
    if not local:
        pytest.skip(f"no {image_repo} image in the local Docker and DRDRILL_LIVE_CLUSTERS is "
                    "not 1 (set it where the images can be pulled)")


def _drill(provider: str, fixture_repo, tmp_path, **options):
    run_id = new_run_id("live")
    out = tmp_path / "report"
    report, _ = run_drill(DrillOptions(
        repo=fixture_repo("chain3"), cluster="clusters/dev", provider=provider,
        report_dir=out, run_id=run_id, converge_timeout_s=600,
        config=Config.from_env(state_dir=tmp_path / "state"), provider_options=options))
    data = json.loads((out / "report.json").read_text())
    assert report.verdict == "passed", data.get("error")
    assert data["time_to_ready_s"] > 0
    left = lh.containers_with_label(run_id) + lh.networks_with_label(run_id)
    assert not left, f"containers/networks left behind: {left}"
    assert not data["leftovers"], data["leftovers"]
    return data


@pytest.mark.kind
@pytest.mark.slow
def test_full_rebuild_on_kind(fixture_repo, tmp_path):
    _can_create("kind", "kindest/node")
    data = _drill("kind", fixture_repo, tmp_path, workers=int(os.environ.get("KIND_WORKERS", 0)))
    assert data["settings"]["provider"]["kind_version"]


@pytest.mark.k3d
@pytest.mark.slow
def test_full_rebuild_on_k3d(fixture_repo, tmp_path):
    _can_create("k3d", "rancher/k3s")
    data = _drill("k3d", fixture_repo, tmp_path)
    assert data["settings"]["provider"]["k3d_version"]
