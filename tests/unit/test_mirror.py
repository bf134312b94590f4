"""The mirror's pure parts: image references, chart version constraints, what a repo pulls,
the registry's access log read back as pull counts."""

from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.gitops.inputs import Obj
from harness.mirror import semver
from harness.mirror.refs import ChartRef, ImageRef, mirror_prefix, parse_image
from harness.mirror.server import pull_stats, registry_config
from harness.mirror.wants import collect

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "want"), [
    ("busybox", ImageRef("docker.io", "library/busybox", "latest")),
    ("busybox:1.36", ImageRef("docker.io", "library/busybox", "1.36")),
    ("drdrillfixtures/web:2.0", ImageRef("docker.io", "drdrillfixtures/web", "2.0")),
    ("index.docker.io/library/redis:7", ImageRef("docker.io", "library/redis", "7")),
    ("ghcr.io/org/app/sub:v1.2.3", ImageRef("ghcr.io", "org/app/sub", "v1.2.3")),
    ("localhost:5000/x", ImageRef("localhost:5000", "x", "latest")),
    ("quay.io/prometheus/prometheus:v2.53.0@sha256:" + "a" * 64,
     ImageRef("quay.io", "prometheus/prometheus", "v2.53.0", "sha256:" + "a" * 64)),
])
def test_image_references_normalise_like_containerd(text, want):
    ref = parse_image(text)
    assert ref == want
    assert ref.reference == (want.digest or want.tag)


def test_mirror_repository_keeps_registries_apart():
    assert parse_image("ghcr.io/a/b:1").mirror_repository == "ghcr.io/a/b"
    assert parse_image("a/b:1").mirror_repository == "docker.io/a/b"
    assert parse_image("localhost:5000/a:1").mirror_repository == "localhost-5000/a"
    assert mirror_prefix("oci://ghcr.io/Org/charts/") == "ghcr.io/org/charts"
    assert mirror_prefix("https://charts.example.org/stable") == "charts.example.org/stable"
    assert ChartRef("oci://ghcr.io/o/charts", "hello", "1.x").mirror_repository == \
        "ghcr.io/o/charts/hello"


@pytest.mark.parametrize("bad", ["", "Upper/Case:1", "a b", "x:${TAG}", "a@sha256:"])
def test_bad_image_references_are_named(bad):
    with pytest.raises(ConfigError):
        parse_image(bad)


VERSIONS = ["0.1.0", "0.1.2", "0.2.0", "1.2.3", "1.2.9", "1.3.0", "2.0.0", "2.1.0-rc.1"]


@pytest.mark.parametrize(("constraint", "want"), [
    ("", "2.0.0"), ("*", "2.0.0"), ("1.2.3", "1.2.3"), ("1.2.4", None),
    ("^0.1.0", "0.1.2"), ("^1.2", "1.3.0"), ("~1.2.0", "1.2.9"), ("1.2.x", "1.2.9"),
    ("1.x", "1.3.0"), (">=1.0.0 <1.3.0", "1.2.9"), (">=1.0.0, <1.3.0", "1.2.9"),
    (">= 2.1.0-rc.0", "2.1.0-rc.1"), ("0.x || 1.2.x", "1.2.9"), (">3", None),
])
def test_chart_version_constraints_pick_like_helm(constraint, want):
    assert semver.best(constraint, VERSIONS) == want


def test_unreadable_constraint_is_an_error():
    with pytest.raises(ValueError, match="cannot read version constraint"):
        semver.best(">=banana", VERSIONS)


def _obj(doc, ns="web"):
    return Obj(doc, ns, "Kustomization/flux-system/apps", "apps/dev/x.yaml")


def test_wants_collects_workload_value_and_chart_references():
    objs = [
        _obj({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
            "initContainers": [{"image": "busybox:1.36"}],
            "containers": [{"image": "ghcr.io/o/app:1"}, {"image": "ghcr.io/o/app:1"}]}}}}),
        _obj({"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {
            "template": {"spec": {"containers": [{"image": "quay.io/o/job:2"}]}}}}}}),
        _obj({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
              "metadata": {"name": "oci"}, "spec": {"type": "oci",
                                                   "url": "oci://ghcr.io/o/charts"}}),
        _obj({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
              "metadata": {"name": "https"}, "spec": {"url": "https://charts.example.org/"}}),
        _obj({"kind": "HelmRelease", "metadata": {"name": "a"}, "spec": {
            "chart": {"spec": {"chart": "a", "version": "^1.0",
                               "sourceRef": {"kind": "HelmRepository", "name": "oci"}}},
            "values": {"image": {"registry": "ghcr.io", "repository": "o/valued", "tag": 3},
                       "sidecar": {"image": "docker.io/o/side:4"}}}}),
        _obj({"kind": "HelmRelease", "metadata": {"name": "b"}, "spec": {
            "chart": {"spec": {"chart": "b", "sourceRef": {"kind": "HelmRepository",
                                                           "name": "https"}}}}}),
        _obj({"kind": "HelmRelease", "metadata": {"name": "g"}, "spec": {
            "chart": {"spec": {"chart": "./charts/g",
                               "sourceRef": {"kind": "GitRepository", "name": "flux-system",
                                             "namespace": "flux-system"}}}}}),
        _obj({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
              "metadata": {"name": "podinfo"}, "spec": {"url": "oci://ghcr.io/o/manifests/p",
                                                        "ref": {"tag": "6.5.0"}}}),
        _obj({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
            {"image": "ghcr.io/o/x:${TAG}"}]}}),
    ]
    wants = collect(objs)
    assert [str(w.item) for w in wants.images] == [
        "docker.io/library/busybox:1.36", "docker.io/o/side:4", "ghcr.io/o/app:1",
        "ghcr.io/o/valued:3", "quay.io/o/job:2"]
    assert wants.images[2].used_by == ("Deployment/web/d",)
    assert {(c.item.source_url, c.item.name, c.item.version) for c in wants.charts} == {
        ("oci://ghcr.io/o/charts", "a", "^1.0"), ("https://charts.example.org", "b", "*"),
        ("oci://ghcr.io/o/manifests", "p", "6.5.0")}
    assert any("./charts/g" in u and "GitRepository" in u for u in wants.unresolved)
    assert any("${TAG}" in u for u in wants.unresolved)


def test_access_log_counts_pulls_and_misses(tmp_path):
    log = tmp_path / "registry.log"
    log.write_text("\n".join([
        '172.18.0.2 - - [06/Dec/2026:04:10:00 +0000] "GET /v2/ghcr.io/o/app/manifests/1 '
        'HTTP/1.1" 200 528 "" "containerd/2.1"',
        '172.18.0.2 - - [06/Dec/2026:04:10:01 +0000] "GET /v2/ghcr.io/o/app/blobs/sha256:ab '
        'HTTP/1.1" 200 1048576 "" "containerd/2.1"',
        '172.18.0.2 - - [06/Dec/2026:04:10:02 +0000] "HEAD /v2/docker.io/o/x/manifests/9 '
        'HTTP/1.1" 404 96 "" "containerd/2.1"',
        '{"level":"info","msg":"response completed"}',
    ]))
    stats = pull_stats(log)
    assert stats.manifests == {"ghcr.io/o/app": 1}
    assert stats.blob_bytes == 1048576
    assert stats.misses == ("docker.io/o/x:9",)
    assert stats.first_at == "06/Dec/2026:04:10:00 +0000"
    assert stats.span_s == 2.0


def test_registry_config_keeps_only_host_platforms(tmp_path):
    cfg = json.loads(registry_config(tmp_path, "172.18.0.1:5000", platforms=("linux/amd64",)))
    assert cfg["http"]["addr"] == "172.18.0.1:5000"
    assert cfg["storage"]["filesystem"]["rootdirectory"] == str(tmp_path)
    assert cfg["validation"]["manifests"]["indexes"]["platformlist"] == [
        {"os": "linux", "architecture": "amd64"}]


def test_bench_has_cold_and_warm_mirror_rows():
    from harness.bench.cli import _sections
    from harness.bench.sections import REGISTERED
    from harness.mirror.bench import render

    assert "kind-mirror" in REGISTERED
    assert _sections("kind-mirror") == ("kind-mirror",)
    lines = render({"rows": [
        {"mirror": "cold", "prefetch_s": 3.2, "ttr_s": 61.5, "verdict": "passed",
         "repositories_pulled": 4, "pulled_mib": 2.1, "pull_span_s": 9.0},
        {"mirror": "warm", "prefetch_s": None, "ttr_s": 58.0, "verdict": "passed",
         "repositories_pulled": 4, "pulled_mib": 2.1, "pull_span_s": 8.0}]}, 2)
    assert "| cold | 3.2 s | 61.5 s | passed | 4 | 2.1 MiB | 9.0 s |" in lines
    assert "| warm | - | 58.0 s | passed | 4 | 2.1 MiB | 8.0 s |" in lines
    assert any(line.startswith("not measured: no Docker") for line in
               render({"error": "no Docker engine"}, 2))
