"""Kind drills through the registry mirror, offline (`nox -s drill-kind`, marked `kind`).

A second registry process stands in for ghcr.io and docker.io (and a local HTTP server for an
https Helm repository): it is seeded with a busybox image written from drdrill's node rootfs
and the fixture's charts. `prefetch` copies what the repo names into an empty mirror; the kind
drill then pulls every image and chart from the mirror on the run network's gateway, while the
nodes reach nothing else and the drill's DNS answers outside names itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.config import Config
from harness.drill import DrillOptions, new_run_id, run_drill
from harness.mirror import open_mirror
from harness.mirror.prefetch import Upstreams, prefetch
from harness.mirror.wants import collect
from harness.tools import ensure_tools
from tests.conftest import FIXTURE_REPOS
from tests.container import labhost as lh
from tests.container.test_live_kind_k3d import _drill, clean_host  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.container, pytest.mark.kind, pytest.mark.slow]


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory) -> Iterator[Upstreams]:
    """The stand-in internet: a registry for ghcr.io and docker.io, an https chart repo."""
    from harness.mirror.bench import kind_mirror_upstream

    with kind_mirror_upstream(Config.from_env(), FIXTURE_REPOS / "kind-mirror",
                              tmp_path_factory.mktemp("upstream")) as upstream:
        yield upstream.upstreams


def _prefetch(repo: Path, upstreams: Upstreams) -> list[dict[str, Any]]:
    from harness.gitops.model import analyze

    config = Config.from_env()
    kustomize = ensure_tools(config, ["kustomize"])["kustomize"].path
    wants = collect(analyze(repo, "clusters/dev", kustomize=kustomize, collect=True).rendered)
    with open_mirror(config) as mirror:
        assert mirror.client().catalog() == [], "the mirror is not empty"
        results = prefetch(mirror.client(), wants.all(), upstreams, platforms=mirror.platforms)
    return [r.to_dict() for r in results]


@pytest.mark.usefixtures("clean_host")
def test_offline_kind_drill_pulls_everything_from_the_mirror(fixture_repo, tmp_path, upstreams,
                                                             monkeypatch):
    monkeypatch.setenv("DRDRILL_MIRROR_DIR", str(tmp_path / "mirror"))
    repo = fixture_repo("kind-mirror")
    items = _prefetch(repo, upstreams)
    assert sorted((i["kind"], i["outcome"]) for i in items) == [
        ("chart", "copied"), ("chart", "copied"), ("image", "copied"), ("image", "copied")], items

    data = _drill("kind", repo, "clusters/dev", tmp_path)
    objects = {(o["kind"], o["name"]) for o in data["objects"]}
    assert {("HelmRelease", "hello"), ("HelmRelease", "greeter")} <= objects
    changes = data["settings"]["local_run_changes"]
    assert any(c.startswith("HelmRepository/web/fixtures: oci://ghcr.io/drdrill-fixtures/charts"
                            " -> oci://") for c in changes), changes
    assert any(c.startswith("HelmRepository/web/stable: https://charts.drdrill-fixtures.example")
               for c in changes), changes

    egress = data["egress"]
    assert egress["policy"] == "mirror"
    assert {"what": "git"}.items() <= egress["reached"][0].items()
    pulled = {x["repository"] for x in egress["reached"] if x["what"] != "git"}
    assert pulled >= {"ghcr.io/drdrill-fixtures/busybox", "docker.io/drdrillfixtures/web",
                      "ghcr.io/drdrill-fixtures/charts/hello",
                      "charts.drdrill-fixtures.example/stable/greeter"}, egress["reached"]
    assert egress["mirror"]["missing"] == [], egress["mirror"]
    assert egress["mirror"]["images_from_mirror"] == 2, egress["mirror"]
    assert egress["mirror"]["charts_from_mirror"] == 2, egress["mirror"]
    writer = [b for b in egress["blocked"] if b["host"] == "api.cloudflare.com"]
    assert writer and writer[0]["namespace"] == "web" \
        and writer[0]["pod"].startswith("external-dns-"), egress["blocked"]
    assert writer[0]["writer"] == "DNS records (external-dns)"
    assert {b["host"] for b in egress["blocked"]} == {"api.cloudflare.com"}, egress["blocked"]
    report_dir = tmp_path / "report"
    md = (report_dir / "report.md").read_text()
    html = (report_dir / "index.html").read_text()
    assert "external writers blocked" in md and f"`web/{writer[0]['pod']}`" in md
    assert "`api.cloudflare.com`" in md
    assert f"<code>web/{writer[0]['pod']}</code>" in html and "api.cloudflare.com" in html


@pytest.mark.usefixtures("clean_host")
def test_an_image_in_no_mirror_fails_fast_as_broken(fixture_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("DRDRILL_MIRROR_DIR", str(tmp_path / "mirror"))
    run_id = new_run_id("live")
    out = tmp_path / "report"
    started = time.monotonic()
    report, _ = run_drill(DrillOptions(
        repo=fixture_repo("kind-unmirrored"), cluster="clusters/dev", provider="kind",
        report_dir=out, run_id=run_id, converge_timeout_s=600,
        config=Config.from_env(state_dir=tmp_path / "state")))
    took = time.monotonic() - started
    data = json.loads((out / "report.json").read_text())
    assert report.verdict == "broken", data.get("error")
    assert "ghcr.io/drdrill-fixtures/not-in-the-mirror:1.0" in data["error"]
    assert "'mirror'" in data["error"]
    converge = next(p for p in data["phases"] if p["name"] == "converge")
    assert converge["outcome"] == "broken" and converge["duration_s"] < 90, converge
    assert took < 600
    assert data["egress"]["mirror"]["missing"], data["egress"]
    left = lh.containers_with_label(run_id) + lh.networks_with_label(run_id)
    assert not left and not data["leftovers"], (left, data["leftovers"])
