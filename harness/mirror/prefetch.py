"""Copy what a recovery pulls into the mirror, one result per item (copied, present, or why
not: rate-limited, auth, not found, unreachable)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from harness.errors import (
    ArtifactNotFound,
    MirrorError,
    RegistryAuthError,
    RegistryRateLimited,
    RegistryUnreachable,
)
from harness.mirror import semver
from harness.mirror.artifacts import push_chart
from harness.mirror.oci import Registry, copy_tree, http_error
from harness.mirror.refs import DOCKER_HUB, ChartRef, ImageRef, mirror_prefix
from harness.mirror.wants import Want

Outcome = str  # copied | present | rate-limited | auth-required | not-found | unreachable | error

_OUTCOMES: tuple[tuple[type[MirrorError], str], ...] = (
    (RegistryRateLimited, "rate-limited"), (RegistryAuthError, "auth-required"),
    (ArtifactNotFound, "not-found"), (RegistryUnreachable, "unreachable"),
)


@dataclass(frozen=True)
class ItemResult:
    kind: str
    """image | chart"""
    ref: str
    outcome: Outcome
    mirror_ref: str = ""
    bytes: int = 0
    seconds: float = 0.0
    error: str = ""
    used_by: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome in ("copied", "present")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ref": self.ref, "outcome": self.outcome,
                "mirror_ref": self.mirror_ref, "bytes": self.bytes,
                "seconds": round(self.seconds, 2), "error": self.error,
                "used_by": list(self.used_by)}


class Upstreams:
    """Where each registry host is reached. The default is the host itself over HTTPS; tests
    map hosts to a local stand-in registry (`overrides`), which no CLI option exposes."""

    def __init__(self, overrides: Mapping[str, str] | None = None, *,
                 timeout_s: float = 60) -> None:
        self.overrides = dict(overrides or {})
        self.timeout_s = timeout_s
        self._clients: dict[str, Registry] = {}

    def base_url(self, host: str) -> str:
        if host in self.overrides:
            return self.overrides[host].rstrip("/")
        return "https://registry-1.docker.io" if host == DOCKER_HUB else f"https://{host}"

    def registry(self, host: str) -> Registry:
        if host not in self._clients:
            self._clients[host] = Registry(self.base_url(host), name=host,
                                           timeout_s=self.timeout_s)
        return self._clients[host]

    def http_url(self, url: str) -> str:
        """A chart repository URL, with its host swapped for an override's."""
        parts = urllib.parse.urlsplit(url)
        if parts.netloc in self.overrides:
            base = urllib.parse.urlsplit(self.overrides[parts.netloc])
            return urllib.parse.urlunsplit((base.scheme, base.netloc, parts.path, parts.query,
                                            ""))
        return url


def _failed(kind: str, ref: str, exc: MirrorError, used_by: tuple[str, ...],
            seconds: float) -> ItemResult:
    outcome = next((name for cls, name in _OUTCOMES if isinstance(exc, cls)), "error")
    return ItemResult(kind, ref, outcome, error=exc.message, seconds=seconds, used_by=used_by)


def prefetch(mirror: Registry, wants: tuple[Want, ...], upstreams: Upstreams, *,
             platforms: tuple[str, ...], refresh: bool = False,
             progress: Callable[[ItemResult], None] | None = None) -> list[ItemResult]:
    """Copy each wanted image and chart into `mirror`; never raises for one item's failure."""
    results: list[ItemResult] = []
    for want in wants:
        started = time.monotonic()
        try:
            if isinstance(want.item, ImageRef):
                res = _image(mirror, want.item, upstreams, platforms, refresh)
            else:
                res = _chart(mirror, want.item, upstreams, platforms, refresh)
            res = ItemResult(res.kind, res.ref, res.outcome, res.mirror_ref, res.bytes,
                             time.monotonic() - started, used_by=want.used_by)
        except MirrorError as exc:
            res = _failed(want.kind, str(want.item), exc, want.used_by,
                          time.monotonic() - started)
        results.append(res)
        if progress is not None:
            progress(res)
    return results


def _image(mirror: Registry, ref: ImageRef, upstreams: Upstreams, platforms: tuple[str, ...],
           refresh: bool) -> ItemResult:
    target = f"{ref.mirror_repository}:{ref.tag}" + (f"@{ref.digest}" if ref.digest else "")
    if not refresh and mirror.head_manifest(ref.mirror_repository, ref.reference):
        return ItemResult("image", str(ref), "present", target)
    src = upstreams.registry(ref.registry)
    top, moved = copy_tree(src, ref.repository, ref.reference, mirror, ref.mirror_repository,
                           ref.tag, platforms=platforms)
    if ref.digest and top.digest != ref.digest:
        raise MirrorError(f"{ref}: the registry served digest {top.digest}")
    return ItemResult("image", str(ref), "copied", target, moved)


def _chart(mirror: Registry, ref: ChartRef, upstreams: Upstreams, platforms: tuple[str, ...],
           refresh: bool) -> ItemResult:
    if ref.is_oci:
        parts = urllib.parse.urlsplit(ref.source_url)
        src = upstreams.registry(parts.netloc)
        src_repo = f"{parts.path.strip('/')}/{ref.name}".strip("/")
        if ref.version.startswith("sha256:") or ref.version == "latest":
            version = ref.version  # an OCIRepository's digest or default tag, as written
        else:
            version = _pick(ref, src.tags(src_repo), f"oci://{parts.netloc}/{src_repo}")
        target = f"{ref.mirror_repository}:{version}"
        if not refresh and mirror.head_manifest(ref.mirror_repository, version):
            return ItemResult("chart", str(ref), "present", target)
        _, moved = copy_tree(src, src_repo, version, mirror, ref.mirror_repository, version,
                             platforms=platforms)
        return ItemResult("chart", str(ref), "copied", target, moved)
    index_url = upstreams.http_url(ref.source_url.rstrip("/") + "/index.yaml")
    index = yaml.safe_load(_http_get(index_url, upstreams.timeout_s))
    entries = ((index or {}).get("entries") or {}).get(ref.name) or []
    by_version = {str(e.get("version")): e for e in entries if isinstance(e, dict)}
    version = _pick(ref, list(by_version), ref.source_url)
    target = f"{ref.mirror_repository}:{version}"
    if not refresh and mirror.head_manifest(ref.mirror_repository, version.replace("+", "_")):
        return ItemResult("chart", str(ref), "present", target)
    urls = by_version[version].get("urls") or []
    if not urls:
        raise ArtifactNotFound(f"chart {ref.name} {version}: the index lists no URL",
                               url=index_url)
    archive_url = upstreams.http_url(urllib.parse.urljoin(ref.source_url.rstrip("/") + "/",
                                                          str(urls[0])))
    archive = _http_get(archive_url, upstreams.timeout_s)
    push_chart(mirror, mirror_prefix(ref.source_url), archive)
    return ItemResult("chart", str(ref), "copied", target, len(archive))


def _pick(ref: ChartRef, versions: list[str], where: str) -> str:
    try:
        chosen = semver.best(ref.version if ref.version != "*" else "", versions)
    except ValueError as exc:
        raise MirrorError(f"chart {ref.name}: {exc}") from None
    if chosen is None:
        raise ArtifactNotFound(f"chart {ref.name}: no version matching {ref.version!r} at "
                               f"{where} (has: {', '.join(sorted(versions)[-8:]) or 'none'})",
                               url=where, status=404)
    return chosen


def _http_get(url: str, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        raise http_error(urllib.parse.urlsplit(url).netloc, exc, "GET", url) from None
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryUnreachable(f"{url} does not answer: {getattr(exc, 'reason', exc)}",
                                  url=url) from None


def summary(results: list[ItemResult]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    return {"items": [r.to_dict() for r in results], "counts": counts,
            "bytes": sum(r.bytes for r in results),
            "ok": all(r.ok for r in results)}


def dumps(results: list[ItemResult]) -> str:
    return json.dumps(summary(results), indent=2)
