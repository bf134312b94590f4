"""Pinned tools downloaded instead of built: a local HTTP server laid out like the release sites
(github.com/..., dl.k8s.io/...) with their checksum files, and the real pinned registry holding
images made from the binaries drdrill built. A wrong checksum fails, naming the file."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.config import Config
from harness.errors import ChecksumMismatch, ToolNotFoundError
from harness.mirror.oci import OCI_INDEX, OCI_MANIFEST, Manifest, sha256_digest
from harness.mirror.server import MirrorRegistry
from harness.tools import ensure_tools, load_manifest
from harness.tools.download import fill

pytestmark = pytest.mark.integration

NAMES = ("etcd", "kustomize", "source-controller")


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    """The binaries drdrill built (or finds cached): what the stand-ins serve."""
    tools = ensure_tools(Config.from_env(), [*NAMES, "registry"])
    return {name: tool.path for name, tool in tools.items()}


def _tar_gz(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def release_site(root: Path, built: dict[str, Path], names: tuple[str, ...] = ("etcd",
                                                                            "kustomize")) -> None:
    """The tools as their releases publish them: archives or bare binaries, plus the checksum
    files (`sha256sum` lines among other files', or a `.sha256` holding only the digest)."""
    manifest = load_manifest()
    for name in names:
        spec = manifest.tools[name]
        assert spec.release is not None
        url = fill(spec.release.url, spec)
        data = built[name].read_bytes()
        if spec.release.member:
            data = _tar_gz({fill(spec.release.member, spec): data})
        # The site's path, as a server unquotes it (kustomize%2Fv5.8.1 is a folder level).
        local = root / url.split("://", 1)[1].replace("%2F", "/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        sums_url = fill(spec.release.checksums, spec)
        sums = root / sums_url.split("://", 1)[1].replace("%2F", "/")
        digest = hashlib.sha256(data).hexdigest()
        if sums_url.endswith(".sha256"):
            sums.write_text(digest + "\n")
            continue
        line = f"{digest}  {local.name}\n"
        other = f"{'0' * 64}  some-other-file.tar.gz\n"
        sums.write_text((sums.read_text() if sums.exists() else other) + line)


@pytest.fixture
def release_server(tmp_path: Path, built: dict[str, Path]) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "site"
    release_site(root, built)
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def registry(tmp_path: Path, built: dict[str, Path]) -> Iterator[MirrorRegistry]:
    """The pinned CNCF distribution registry holding ghcr.io/fluxcd/source-controller."""
    with MirrorRegistry(built["registry"], tmp_path / "storage", tmp_path / "registry",
                        run_id="test-download") as reg:
        push_controller_image(reg, built["source-controller"])
        yield reg


def push_controller_image(reg: MirrorRegistry, binary: Path,
                          name: str = "source-controller") -> str:
    spec = load_manifest().tools[name]
    assert spec.image is not None
    repo, _, tag = fill(spec.image.ref, spec).partition("/")[2].rpartition(":")
    client = reg.client()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = binary.read_bytes()
        info = tarfile.TarInfo(fill(spec.image.path, spec))
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), compresslevel=1)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [sha256_digest(raw.getvalue())]}}).encode()
    image = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": client.push_bytes(repo, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": client.push_bytes(repo, layer), "size": len(layer)}],
    }).encode()
    child = client.put_manifest(repo, sha256_digest(image),
                                Manifest(image, OCI_MANIFEST, sha256_digest(image)))
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": len(image),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    return client.put_manifest(repo, tag, Manifest(index, OCI_INDEX, sha256_digest(index)))


def _config(tmp_path: Path, site: str, reg: MirrorRegistry | None = None) -> Config:
    return Config(cache_dir=tmp_path / "cache", allow_build=False, release_mirror=site,
                  oci_mirror=f"ghcr.io={reg.url}" if reg else None)


def test_first_run_downloads_verifies_and_caches_instead_of_building(
        tmp_path, built, release_server, registry):
    site, _ = release_server
    config = _config(tmp_path, site, registry)
    lines: list[str] = []
    got = ensure_tools(config, NAMES, progress=lines.append)
    assert {n: t.source for n, t in got.items()} == dict.fromkeys(NAMES, "downloaded")
    for name in NAMES:
        assert got[name].sha256 == hashlib.sha256(built[name].read_bytes()).hexdigest()
        assert got[name].path.is_relative_to(config.tools_cache)
    assert any("github.com/etcd-io/etcd/releases/download/" in line for line in lines)
    assert any("ghcr.io/fluxcd/source-controller:" in line and registry.url in line
               for line in lines)
    again = ensure_tools(config, NAMES, progress=lines.append)
    assert {t.source for t in again.values()} == {"cache"}


def test_a_wrong_checksum_fails_naming_the_file_and_caches_nothing(
        tmp_path, built, release_server):
    site, root = release_server
    spec = load_manifest().tools["etcd"]
    assert spec.release is not None
    sums = root / fill(spec.release.checksums, spec).split("://", 1)[1]
    archive = fill(spec.release.url, spec).rsplit("/", 1)[1]
    sums.write_text(f"{'ab' * 32}  {archive}\n")
    config = _config(tmp_path, site)
    with pytest.raises(ChecksumMismatch, match=archive.replace(".", r"\.")) as err:
        ensure_tools(config, ["etcd"])
    assert "tampered" in str(err.value) and "SHA256SUMS" in str(err.value)
    assert not (config.tools_cache / "etcd").exists()


def test_a_release_that_is_not_there_falls_back_to_the_build(tmp_path, built, release_server):
    site, root = release_server
    spec = load_manifest().tools["etcd"]
    assert spec.release is not None
    (root / fill(spec.release.url, spec).split("://", 1)[1]).unlink()
    lines: list[str] = []
    # Building is off here, so the fallback ends in the usual "cannot be built" error.
    with pytest.raises(ToolNotFoundError, match="building is turned off"):
        ensure_tools(_config(tmp_path, site), ["etcd"], progress=lines.append)
    assert any("cannot download" in line and "building etcd instead" in line for line in lines)


def test_an_image_digest_pin_is_enforced(tmp_path, built, registry):
    import dataclasses

    from harness.tools.download import download

    spec = load_manifest().tools["source-controller"]
    assert spec.image is not None
    pinned = dataclasses.replace(spec, image=dataclasses.replace(spec.image,
                                                                 digest="sha256:" + "0" * 64))
    dest = tmp_path / "dl"
    dest.mkdir()
    with pytest.raises(ChecksumMismatch, match="not the pinned sha256:0000"):
        download(_config(tmp_path, "http://127.0.0.1:9", registry), pinned, dest,
                 lambda _: None)


def test_pack_and_unpack_move_the_tools_to_a_machine_that_builds_nothing(tmp_path, built,
                                                                        capsys):
    from harness.cli import main
    from harness.tools import ensure_tools as ensure
    from harness.tools import flux_crds

    flux_crds(Config.from_env())
    archive = tmp_path / "tools.tar.gz"
    assert main(["tools", "pack", str(archive), "--only", "etcd", "kustomize"]) == 0
    assert "2 tools, the Flux CRDs" in capsys.readouterr().out
    # Another machine: an empty cache, no Go, no network.
    other = Config(cache_dir=tmp_path / "other", allow_build=False, go="/nonexistent/go")
    from harness.tools.pack import unpack

    assert unpack(other, archive) == ["etcd", "kustomize"]
    got = ensure(other, ["etcd", "kustomize"])
    assert {t.source for t in got.values()} == {"cache"}
    assert got["etcd"].sha256 == hashlib.sha256(built["etcd"].read_bytes()).hexdigest()
    assert flux_crds(other)  # no Go needed: the CRDs came in the pack
    # An altered member: nothing installed, the member named.
    altered = tmp_path / "altered.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(altered, "w:gz", compresslevel=1) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else b""
            if member.name.endswith("/etcd"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(member, io.BytesIO(data))
    third = Config(cache_dir=tmp_path / "third", allow_build=False)
    with pytest.raises(ChecksumMismatch, match=r"tools/etcd/v[\d.]+/etcd in .*altered"):
        unpack(third, altered)
    assert not (third.tools_cache / "etcd").exists()
    assert not (third.tools_cache / "kustomize").exists()
