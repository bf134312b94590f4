"""Put local things into a registry as OCI artifacts: an image from `docker save` (or from
layer tarballs), a Helm chart archive as Helm's OCI layout."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.command import Command, run
from harness.errors import ConfigError, MirrorError
from harness.mirror.oci import (
    HELM_CHART,
    HELM_CONFIG,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Manifest,
    Registry,
    copy_file_blob,
    sha256_digest,
)
from harness.mirror.refs import ImageRef


def _manifest(config: tuple[str, str, int], layers: Sequence[tuple[str, str, int]],
              annotations: Mapping[str, str] | None = None) -> Manifest:
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config[0], "digest": config[1], "size": config[2]},
        "layers": [{"mediaType": m, "digest": d, "size": s} for m, d, s in layers],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Manifest(body, OCI_MANIFEST, sha256_digest(body))


def push_image(dst: Registry, repo: str, tag: str, layers: Sequence[Path],
               config: Mapping[str, Any]) -> str:
    """Push uncompressed layer tarballs and an image config (its rootfs.diff_ids are filled
    here) as one linux image; returns the manifest digest."""
    pushed = [(OCI_LAYER, *copy_file_blob(dst, repo, layer)) for layer in layers]
    cfg = dict(config)
    cfg["rootfs"] = {"type": "layers", "diff_ids": [d for _, d, _ in pushed]}
    body = json.dumps(cfg, separators=(",", ":")).encode()
    cfg_digest = dst.push_bytes(repo, body)
    manifest = _manifest((OCI_CONFIG, cfg_digest, len(body)), pushed)
    dst.put_manifest(repo, tag, manifest)
    return manifest.digest


def layer_from_files(files: Mapping[str, bytes], out: Path, *, mode: int = 0o755) -> Path:
    """An uncompressed layer tarball holding `files` (path in the image -> content)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = name.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(name.strip("/"))
            info.size, info.mode = len(files[name]), mode
            tar.addfile(info, io.BytesIO(files[name]))
    return out


def push_docker_archive(dst: Registry, archive: Path, repo: str, tag: str) -> str:
    """Push a `docker save`-format tarball (one image) as `repo:tag`; the manifest digest."""
    with tempfile.TemporaryDirectory(prefix="drdrill-import-") as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp), filter="data")
        root = Path(tmp)
        entries = json.loads((root / "manifest.json").read_text())
        if len(entries) != 1:
            raise MirrorError(f"{archive} holds {len(entries)} images, expected 1")
        entry = entries[0]
        config = json.loads((root / entry["Config"]).read_text())
        layers = [root / layer for layer in entry["Layers"]]
        return push_image(dst, repo, tag, layers, config)


def import_docker_image(dst: Registry, image: str, ref: ImageRef) -> str:
    """`docker save` an image of the local engine and push it as `ref`'s mirror repository."""
    with tempfile.TemporaryDirectory(prefix="drdrill-save-") as tmp:
        archive = Path(tmp) / "image.tar"
        run(Command.of("docker", "save", "-o", archive, image).with_timeout(600),
            fix=f"is {image} in the local Docker engine (`docker images`)?")
        return push_docker_archive(dst, archive, ref.mirror_repository, ref.tag)


def chart_metadata(archive: bytes) -> dict[str, Any]:
    """Chart.yaml of a packaged chart (`<name>/Chart.yaml` inside the .tgz)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar.getmembers():
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isfile():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        meta = yaml.safe_load(fh.read())
                        if isinstance(meta, dict) and meta.get("name") and meta.get("version"):
                            return meta
    except (tarfile.TarError, OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"not a Helm chart archive: {exc}") from None
    raise ConfigError("not a Helm chart archive: no <name>/Chart.yaml with name and version")


def push_chart(dst: Registry, repo_prefix: str, archive: bytes) -> tuple[str, str, str]:
    """Push a chart .tgz the way `helm push` does; (repository, version, manifest digest)."""
    meta = chart_metadata(archive)
    name, version = str(meta["name"]), str(meta["version"])
    repo = f"{repo_prefix.strip('/')}/{name}"
    layer = dst.push_bytes(repo, archive)
    cfg = json.dumps(meta, separators=(",", ":"), default=str).encode()
    cfg_digest = dst.push_bytes(repo, cfg)
    manifest = _manifest((HELM_CONFIG, cfg_digest, len(cfg)), [(HELM_CHART, layer, len(archive))],
                         {"org.opencontainers.image.title": name,
                          "org.opencontainers.image.version": version})
    dst.put_manifest(repo, version.replace("+", "_"), manifest)
    return repo, version, manifest.digest


def package_chart(chart_dir: Path) -> bytes:
    """A chart folder as the .tgz `helm package` makes (entries under `<name>/`)."""
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    name = str(meta["name"])
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in chart_dir.rglob("*") if p.is_file()):
            info = tar.gettarinfo(str(path), f"{name}/{path.relative_to(chart_dir)}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()
