"""Prefetch into an empty mirror from a second registry process that stands in for the internet
(ghcr.io, docker.io), and from an https-style Helm repository (a local HTTP server): both real
CNCF distribution registries from the pinned build, nothing leaves loopback."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from harness.config import Config
from harness.errors import ArtifactNotFound
from harness.mirror.artifacts import layer_from_files, package_chart, push_chart, push_image
from harness.mirror.oci import OCI_INDEX, Manifest, Registry, sha256_digest
from harness.mirror.prefetch import Upstreams, prefetch
from harness.mirror.server import MirrorRegistry
from harness.mirror.wants import collect
from harness.tools import MIRROR_TOOLS, ensure_tools
from tests.conftest import FIXTURE_REPOS

pytestmark = pytest.mark.integration

PLATFORM = "linux/amd64"


@pytest.fixture(scope="module")
def registry_binary() -> Path:
    return ensure_tools(Config.from_env(), MIRROR_TOOLS)["registry"].path


@pytest.fixture(scope="module")
def kustomize_path() -> Path:
    return ensure_tools(Config.from_env(), ["kustomize"])["kustomize"].path


def _registry(binary: Path, root: Path, name: str) -> MirrorRegistry:
    return MirrorRegistry(binary, root / name / "storage", root / name / "work",
                          f"test-{name}-{uuid.uuid4().hex[:6]}", platforms=(PLATFORM,))


def _image(reg: Registry, repo: str, tag: str, tmp: Path, content: bytes) -> str:
    layer = layer_from_files({"bin/hello": content}, tmp / f"{uuid.uuid4().hex}.tar")
    return push_image(reg, repo, tag, [layer], {"architecture": "amd64", "os": "linux",
                                                "config": {"Entrypoint": ["/bin/hello"]}})


def _multi_platform(reg: Registry, repo: str, tag: str, tmp: Path) -> None:
    """An index with an amd64 and an arm64 image, as public registries serve."""
    children = []
    for arch in ("amd64", "arm64"):
        digest = _image(reg, repo, f"build-{arch}", tmp, f"#!/bin/sh\necho {arch}\n".encode())
        body = reg.get_manifest(repo, digest).body
        children.append({"mediaType": json.loads(body)["mediaType"], "digest": digest,
                         "size": len(body), "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": children}).encode()
    reg.put_manifest(repo, tag, Manifest(index, OCI_INDEX, sha256_digest(index)))


class _ChartRepo(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if self.path.startswith("/limited/"):
            self.send_response(429)
            self.send_header("Retry-After", "60")
            self.end_headers()
            return
        if self.path.startswith("/private/"):
            self.send_response(401)
            self.end_headers()
            return
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def chart_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ChartRepo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _greeter(version: str, tmp: Path) -> bytes:
    src = FIXTURE_REPOS / "kind-mirror" / "charts" / "hello"
    dest = tmp / f"greeter-{version}"
    for f in src.rglob("*"):
        if f.is_file():
            out = dest / f.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(f.read_bytes())
    meta = yaml.safe_load((dest / "Chart.yaml").read_text())
    meta.update(name="greeter", version=version)
    (dest / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return package_chart(dest)


def test_prefetch_fills_an_empty_mirror_from_the_stand_in(registry_binary, tmp_path,
                                                          chart_server, kustomize_path):
    from harness.gitops.model import analyze
    from tests.conftest import git_commit_tree

    repo = tmp_path / "repo"
    git_commit_tree([FIXTURE_REPOS / "kind-mirror"], repo)
    wants = collect(analyze(repo, "clusters/dev", kustomize=kustomize_path,
                            collect=True).rendered)
    assert sorted(str(w.item) for w in wants.images) == [
        "docker.io/drdrillfixtures/web:2.0", "ghcr.io/drdrill-fixtures/busybox:1.36"]
    assert sorted(str(w.item) for w in wants.charts) == [
        "https://charts.drdrill-fixtures.example/stable/greeter:1.2.x",
        "oci://ghcr.io/drdrill-fixtures/charts/hello:^0.1.0"]

    with _registry(registry_binary, tmp_path, "standin") as standin, \
            _registry(registry_binary, tmp_path, "mirror") as mirror:
        up = standin.client()
        _multi_platform(up, "drdrill-fixtures/busybox", "1.36", tmp_path)
        _image(up, "drdrillfixtures/web", "2.0", tmp_path, b"web")
        hello = package_chart(FIXTURE_REPOS / "kind-mirror" / "charts" / "hello")
        push_chart(up, "drdrill-fixtures/charts", hello)
        for version in ("0.1.0", "0.2.0"):  # ^0.1.0 must choose the fixture's 0.1.2
            meta = yaml.safe_dump({"apiVersion": "v2", "name": "hello", "version": version})
            tmp_chart = tmp_path / f"hello-{version}"
            (tmp_chart / "templates").mkdir(parents=True)
            (tmp_chart / "Chart.yaml").write_text(meta)
            push_chart(up, "drdrill-fixtures/charts", package_chart(tmp_chart))
        _ChartRepo.files = {
            "/stable/index.yaml": yaml.safe_dump({"apiVersion": "v1", "entries": {"greeter": [
                {"name": "greeter", "version": v, "urls": [f"greeter-{v}.tgz"]}
                for v in ("1.2.3", "1.2.10", "1.3.0")]}}).encode(),
            **{f"/stable/greeter-{v}.tgz": _greeter(v, tmp_path)
               for v in ("1.2.3", "1.2.10", "1.3.0")},
        }
        upstreams = Upstreams({"ghcr.io": standin.url, "docker.io": standin.url,
                               "charts.drdrill-fixtures.example": chart_server})
        local = mirror.client()
        assert local.catalog() == []

        results = prefetch(local, wants.all(), upstreams, platforms=(PLATFORM,))
        by_ref = {r.ref: r for r in results}
        assert [r.outcome for r in results] == ["copied"] * 4, [r.to_dict() for r in results]
        assert by_ref["oci://ghcr.io/drdrill-fixtures/charts/hello:^0.1.0"].mirror_ref == \
            "ghcr.io/drdrill-fixtures/charts/hello:0.1.2"
        assert by_ref["https://charts.drdrill-fixtures.example/stable/greeter:1.2.x"] \
            .mirror_ref == "charts.drdrill-fixtures.example/stable/greeter:1.2.10"
        assert by_ref["ghcr.io/drdrill-fixtures/busybox:1.36"].used_by == \
            ("Deployment/web/external-dns", "Deployment/web/static")

        assert sorted(local.catalog()) == [
            "charts.drdrill-fixtures.example/stable/greeter",
            "docker.io/drdrillfixtures/web", "ghcr.io/drdrill-fixtures/busybox",
            "ghcr.io/drdrill-fixtures/charts/hello"]
        # The index is kept as served (same digest as upstream), with only this platform's
        # image behind it: the arm64 child was never copied.
        index = local.get_manifest("ghcr.io/drdrill-fixtures/busybox", "1.36")
        assert index.digest == up.get_manifest("drdrill-fixtures/busybox", "1.36").digest
        arm = next(m for m in index.doc["manifests"]
                   if m["platform"]["architecture"] == "arm64")
        with pytest.raises(ArtifactNotFound):
            local.get_manifest("ghcr.io/drdrill-fixtures/busybox", arm["digest"])
        assert local.head_manifest("charts.drdrill-fixtures.example/stable/greeter", "1.3.0") \
            is None

        again = prefetch(local, wants.all(), upstreams, platforms=(PLATFORM,))
        assert [r.outcome for r in again] == ["present"] * 4
        assert sum(r.bytes for r in again) == 0
        assert mirror.pulls().manifests["ghcr.io/drdrill-fixtures/busybox"] >= 1


def test_prefetch_names_rate_limits_auth_and_missing_items(registry_binary, tmp_path,
                                                          chart_server):
    from harness.mirror.refs import ChartRef, parse_image
    from harness.mirror.wants import Want

    wants = (
        Want(parse_image("ghcr.io/nobody/missing:1"), ("Deployment/a/b",)),
        Want(ChartRef("https://limited.example/limited", "x", "1.0.0"), ("HelmRelease/a/x",)),
        Want(ChartRef("https://private.example/private", "y", "1.0.0"), ("HelmRelease/a/y",)),
        Want(parse_image("quay.io/o/unreachable:1"), ("Deployment/a/c",)),
    )
    with _registry(registry_binary, tmp_path, "standin") as standin, \
            _registry(registry_binary, tmp_path, "mirror") as mirror:
        upstreams = Upstreams({"ghcr.io": standin.url, "limited.example": chart_server,
                               "private.example": chart_server,
                               "quay.io": "http://127.0.0.1:9"}, timeout_s=5)
        results = prefetch(mirror.client(), wants, upstreams, platforms=(PLATFORM,))
    assert [r.outcome for r in results] == ["not-found", "rate-limited", "auth-required",
                                            "unreachable"]
    assert "rate-limited" in results[1].error and "HTTP 429" in results[1].error
    assert all(not r.ok for r in results)


def test_cli_import_list_prune(registry_binary, tmp_path, monkeypatch, capsys):
    """`drdrill mirror import --chart`, `list`, `prune --all` over a cache folder of its own."""
    from harness.cli import main

    monkeypatch.setenv("DRDRILL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DRDRILL_TOOLS_DIR", str(registry_binary.parent))
    archive = tmp_path / "hello.tgz"
    archive.write_bytes(package_chart(FIXTURE_REPOS / "kind-mirror" / "charts" / "hello"))
    assert main(["mirror", "import", "--chart", str(archive),
                 "--as", "oci://ghcr.io/drdrill-fixtures/charts"]) == 0
    assert main(["mirror", "list", "--json"]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out[out.index("["):])
    assert [(r["kind"], r["repository"], r["tag"]) for r in rows] == [
        ("chart", "ghcr.io/drdrill-fixtures/charts/hello", "0.1.2")]
    assert main(["mirror", "prune", "--all"]) == 0
    assert "1 deleted" in capsys.readouterr().out
    assert main(["mirror", "list"]) == 0
    assert "the mirror is empty" in capsys.readouterr().out
    blobs = tmp_path / "cache" / "mirror" / "docker" / "registry" / "v2" / "blobs"
    assert not [p for p in blobs.rglob("data")], "garbage collection left blobs behind"


def _kustomize_build(kustomize: Path, folder: Path, resources: list[str],
                     patches: list[dict]) -> list[dict]:
    import subprocess

    (folder / "kustomization.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
         "resources": resources, "patches": patches}))
    out = subprocess.run([str(kustomize), "build", str(folder)], capture_output=True, text=True,
                         check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_chart_sources_are_redirected_to_the_mirror_as_kustomize_applies_it(tmp_path,
                                                                            kustomize_path):
    """Two levels, as Flux applies them: the root Kustomization's patches give the child
    Kustomization `apps` its own patches, and those rewrite the HelmRepositories."""
    from harness.gitops.model import analyze
    from harness.mirror.redirect import redirects
    from tests.conftest import git_commit_tree

    repo = tmp_path / "repo"
    git_commit_tree([FIXTURE_REPOS / "kind-mirror"], repo)
    model = analyze(repo, "clusters/dev", kustomize=kustomize_path, collect=True)
    red = redirects(model.rendered, "Kustomization/flux-system/flux-system", "172.18.0.1:5000")
    assert red.skipped == ()
    assert sorted(red.changes) == [
        "HelmRepository/web/fixtures: oci://ghcr.io/drdrill-fixtures/charts -> "
        "oci://172.18.0.1:5000/ghcr.io/drdrill-fixtures/charts (the drill's registry mirror)",
        "HelmRepository/web/stable: https://charts.drdrill-fixtures.example/stable -> "
        "oci://172.18.0.1:5000/charts.drdrill-fixtures.example/stable (the drill's registry "
        "mirror)"]
    level1 = tmp_path / "level1"
    level1.mkdir()
    (level1 / "apps.yaml").write_text((repo / "clusters/dev/apps.yaml").read_text())
    [apps] = _kustomize_build(kustomize_path, level1, ["apps.yaml"], list(red.patches))
    level2 = repo / "apps" / "dev"
    docs = _kustomize_build(kustomize_path, level2, ["namespace.yaml", "sources.yaml",
                                                     "helmrelease.yaml", "deployment.yaml"],
                            apps["spec"]["patches"])
    sources = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "HelmRepository"}
    assert sources["fixtures"] == {"type": "oci", "interval": "1h", "insecure": True,
                                   "url": "oci://172.18.0.1:5000/ghcr.io/drdrill-fixtures/charts"}
    assert sources["stable"]["url"] == \
        "oci://172.18.0.1:5000/charts.drdrill-fixtures.example/stable"
    assert sources["stable"]["type"] == "oci" and sources["stable"]["insecure"] is True
    # A child that has patches of its own keeps them: the redirect is appended.
    with_own = yaml.safe_load((repo / "clusters/dev/apps.yaml").read_text())
    with_own["spec"]["patches"] = [{"patch": "[]", "target": {"kind": "ConfigMap"}}]
    (level1 / "apps.yaml").write_text(yaml.safe_dump(with_own))
    from dataclasses import replace

    rendered = [replace(o, doc=with_own) if o.kind == "Kustomization" and o.name == "apps"
                else o for o in model.rendered]
    red2 = redirects(rendered, "Kustomization/flux-system/flux-system", "172.18.0.1:5000")
    [apps2] = _kustomize_build(kustomize_path, level1, ["apps.yaml"], list(red2.patches))
    assert apps2["spec"]["patches"][0] == {"patch": "[]", "target": {"kind": "ConfigMap"}}
    assert len(apps2["spec"]["patches"]) == 3
