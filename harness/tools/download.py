"""Fetch a pinned binary the fast way: from its official release (checked against the release's
checksum file) or its official OCI image (through the registry API, no Docker; every digest
checked). A build from the Go module proxy stays the fallback (`build`).

`Config.release_mirror` / `Config.oci_mirror` stand in for the release sites and registries
(an air-gapped mirror, or the tests' local server and registry).
"""

from __future__ import annotations

import hashlib
import io
import logging
import platform
import re
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from harness.config import Config
from harness.errors import ChecksumMismatch, MirrorError, ToolDownloadError
from harness.tools.manifest import ImageSpec, ReleaseSpec, ToolSpec

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
TIMEOUT_S = 120.0
CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


def host_os_arch() -> tuple[str, str]:
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower())
    return platform.system().lower(), arch


def fill(template: str, spec: ToolSpec) -> str:
    os_name, arch = host_os_arch()
    return template.format(version=spec.version, os=os_name, arch=arch)


def downloadable(config: Config, spec: ToolSpec) -> bool:
    """Whether to try a download: asked for (DRDRILL_ALLOW_DOWNLOAD=1) or a mirror named for
    this tool's source, and the manifest says where the binary is published."""
    if spec.release is not None:
        return config.allow_download or bool(config.release_mirror)
    if spec.image is not None:
        host = fill(spec.image.ref, spec).split("/", 1)[0]
        return config.allow_download or registry_url(config, host) != f"https://{host}"
    return False


def download(config: Config, spec: ToolSpec, dest_dir: Path, progress: Progress) -> Path:
    """The verified binary of `spec` as a new file in `dest_dir`.

    ChecksumMismatch when a file is not what its release or registry says (never retried with
    a build: something is wrong with the source); ToolDownloadError when it cannot be fetched.
    """
    if spec.release is not None:
        return _from_release(config, spec, spec.release, dest_dir, progress)
    assert spec.image is not None
    return _from_image(config, spec, spec.image, dest_dir, progress)


# -- release sites ---------------------------------------------------------------------------

def mirrored_url(config: Config, url: str) -> str:
    """`https://host/path` as the release mirror serves it: `<mirror>/host/path`."""
    if not config.release_mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    return f"{config.release_mirror.rstrip('/')}/{parts.netloc}{parts.path}"


def _get(config: Config, spec: ToolSpec, url: str, out: IO[bytes]) -> str:
    """Stream `url` into `out`; return its sha256."""
    real = mirrored_url(config, url)
    if not real.startswith(("https://", "http://")):
        raise ToolDownloadError(f"{real} is not an http(s) URL", tool=spec.name,
                                version=spec.version)
    digest = hashlib.sha256()
    try:
        # The URL is the manifest's (https) or the configured mirror's.
        with urllib.request.urlopen(real, timeout=TIMEOUT_S) as resp:  # noqa: S310
            while chunk := resp.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ToolDownloadError(f"cannot download {real}: {reason}", tool=spec.name,
                                version=spec.version,
                                fix="check network access to the release site, or set "
                                    "DRDRILL_RELEASE_MIRROR to a mirror of it") from None
    return digest.hexdigest()


def expected_sha256(text: str, filename: str) -> str | None:
    """The checksum a release's checksum file gives `filename`: `sha256sum` lines
    (`<hex>  <name>`, `<hex> *<name>`) or a file holding only the hex digest."""
    tokens = text.split()
    if len(tokens) == 1 and _HEX64.fullmatch(tokens[0].lower()):
        return tokens[0].lower()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and _HEX64.fullmatch(parts[0].lower()):
            name = parts[-1].lstrip("*")
            if name == filename or name.rsplit("/", 1)[-1] == filename:
                return parts[0].lower()
    return None


def _from_release(config: Config, spec: ToolSpec, rel: ReleaseSpec, dest_dir: Path,
                  progress: Progress) -> Path:
    url, sums_url = fill(rel.url, spec), fill(rel.checksums, spec)
    filename = urllib.parse.unquote(url.rsplit("/", 1)[-1])
    sums = io.BytesIO()
    _get(config, spec, sums_url, sums)
    want = expected_sha256(sums.getvalue().decode("utf-8", "replace"), filename)
    if want is None:
        raise ToolDownloadError(f"{sums_url} names no sha256 for {filename}", tool=spec.name,
                                version=spec.version)
    progress(f"downloading {spec.name} {spec.version} from {mirrored_url(config, url)}")
    with tempfile.NamedTemporaryFile(dir=dest_dir, prefix=f".{filename}.", delete=False) as fh:
        got = _get(config, spec, url, fh)
        fetched = Path(fh.name)
    if got != want:
        fetched.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"{filename} of {spec.name} {spec.version} has sha256 {got}, but {sums_url} says "
            f"{want}: corrupt or tampered download, not used", tool=spec.name,
            version=spec.version, fix=f"check the mirror serving {mirrored_url(config, url)}")
    binary = dest_dir / spec.name
    if rel.member is None:
        fetched.replace(binary)
    else:
        member = fill(rel.member, spec)
        try:
            _extract(fetched, member, binary)
        finally:
            fetched.unlink(missing_ok=True)
    binary.chmod(0o755)
    return binary


def _extract(archive: Path, member: str, out: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        found = _member(tar, member)
        if found is None:
            raise FileNotFoundError(f"{member} is not in {archive.name}")
        src = tar.extractfile(found)
        assert src is not None
        with src, out.open("wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)


def _member(tar: tarfile.TarFile, path: str) -> tarfile.TarInfo | None:
    want = path.strip("/")
    for info in tar:
        if info.isfile() and info.name.lstrip("./") == want:
            return info
    return None


# -- OCI images ------------------------------------------------------------------------------

def registry_url(config: Config, host: str) -> str:
    """The base URL of `host`'s registry, or of the registry that stands in for it."""
    for entry in (config.oci_mirror or "").split(","):
        name, sep, url = entry.strip().partition("=")
        if sep and name == host:
            return url.rstrip("/")
    return f"https://{host}"


def _from_image(config: Config, spec: ToolSpec, image: ImageSpec, dest_dir: Path,
                progress: Progress) -> Path:
    from harness.mirror.oci import Registry

    ref = fill(image.ref, spec)
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    registry = Registry(registry_url(config, host), name=host)
    progress(f"pulling {spec.name} {spec.version} from {ref} ({registry.base_url})")
    try:
        manifest = registry.get_manifest(repo, tag)
        if image.digest and manifest.digest != image.digest:
            raise ChecksumMismatch(
                f"{ref} is {manifest.digest}, not the pinned {image.digest}: not used",
                tool=spec.name, version=spec.version)
        if manifest.is_index:
            child = _platform_child(manifest.doc, ref, spec)
            manifest = registry.get_manifest(repo, child)
            if manifest.digest != child:
                raise ChecksumMismatch(f"the manifest of {ref} for this platform has digest "
                                       f"{manifest.digest}, but its index says {child}",
                                       tool=spec.name, version=spec.version)
        layers = [str(layer["digest"]) for layer in manifest.doc.get("layers") or ()]
        binary = dest_dir / spec.name
        for digest in reversed(layers):  # the top layer wins
            with tempfile.TemporaryFile(dir=dest_dir) as blob:
                registry.fetch_blob(repo, digest, blob)  # raises when the digest differs
                blob.seek(0)
                if _extract_from_layer(blob, fill(image.path, spec), binary):
                    binary.chmod(0o755)
                    return binary
    except MirrorError as exc:
        if "digest" in exc.message and "tampered" in exc.message:
            raise ChecksumMismatch(exc.message, tool=spec.name, version=spec.version) from None
        raise ToolDownloadError(f"cannot pull {ref}: {exc.message}", tool=spec.name,
                                version=spec.version,
                                fix="check access to the registry, or set DRDRILL_OCI_MIRROR "
                                    "(e.g. ghcr.io=http://127.0.0.1:5000)") from None
    raise ToolDownloadError(f"{ref} has no {image.path} in any layer", tool=spec.name,
                            version=spec.version)


def _platform_child(index: Mapping[str, Any], ref: str, spec: ToolSpec) -> str:
    os_name, arch = host_os_arch()
    for entry in index.get("manifests") or ():
        plat = entry.get("platform") or {}
        if plat.get("os") == os_name and plat.get("architecture") == arch:
            return str(entry["digest"])
    raise ToolDownloadError(f"{ref} has no image for {os_name}/{arch}", tool=spec.name,
                            version=spec.version)


def _extract_from_layer(blob: IO[bytes], path: str, out: Path) -> bool:
    with tarfile.open(fileobj=blob, mode="r:*") as tar:
        found = _member(tar, path)
        if found is None:
            return False
        src = tar.extractfile(found)
        assert src is not None
        with src, out.open("wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
    return True
