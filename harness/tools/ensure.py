"""`ensure_tools`: every pinned binary the caller needs, found or put into the cache.

The order: the tools folder, PATH, the cache (`resolve`), a download from the official release or
image (`download`, checksums verified), then a build from the Go module proxy (`build`). Callers
ask here and never care which way a binary arrived.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.config import Config
from harness.errors import (
    ChecksumMismatch,
    ToolBuildError,
    ToolDownloadError,
    ToolNotFoundError,
)
from harness.tools.build import (
    build_family,
    check_go_release,
    fetch_flux_crds,
    usable_go,
    yaml_files,
)
from harness.tools.download import download, downloadable
from harness.tools.manifest import FLUX_CRDS_DIR, TOOL_NAMES, ToolSpec, load_manifest
from harness.tools.resolve import (
    ResolvedTool,
    Unusable,
    file_lock,
    from_cache,
    install_into_cache,
    resolve_existing,
)

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def ensure_tools(config: Config, names: Iterable[str] | None = None, *,
                 progress: Progress | None = None) -> dict[str, ResolvedTool]:
    """Resolve every named tool (default: all), building missing ones; name -> ResolvedTool."""
    manifest = load_manifest()
    say: Progress = progress or (lambda line: log.info("%s", line))
    wanted = list(dict.fromkeys(names if names is not None else TOOL_NAMES))
    unknown = [n for n in wanted if n not in manifest.tools]
    if unknown:
        raise ToolNotFoundError(f"unknown tool(s) {', '.join(unknown)}; known: "
                                f"{', '.join(manifest.tools)}", tool=unknown[0], version="",
                                fix="use one of the names `drdrill tools list` shows")
    resolved: dict[str, ResolvedTool] = {}
    missing: list[str] = []
    for name in wanted:
        found = resolve_existing(config, manifest.tools[name])
        if found is None:
            missing.append(name)
        else:
            resolved[name] = found
    missing = [name for name in missing
               if not _downloaded(config, manifest.tools[name], resolved, say)]
    if missing:
        first = manifest.tools[missing[0]]
        go = usable_go(config, first, missing)
        families = [f for f in manifest.families
                    if any(manifest.tools[m].family == f for m in missing)]
        for family in families:
            spec = next(manifest.tools[m] for m in missing if manifest.tools[m].family == family)
            check_go_release(config, go, spec, missing, say)
            built = build_family(config, family, go, say)
            for name in (m for m in missing if manifest.tools[m].family == family):
                cached = from_cache(config, manifest.tools[name])
                if cached is None:
                    raise ToolBuildError(
                        f"{name} is not in the cache after building family {family}",
                        tool=name, version=manifest.tools[name].version)
                resolved[name] = (ResolvedTool(name, cached.version, cached.path, "built",
                                               cached.sha256) if name in built else cached)
    return {name: resolved[name] for name in wanted}


def _downloaded(config: Config, spec: ToolSpec, resolved: dict[str, ResolvedTool],
                say: Progress) -> bool:
    """Fetch `spec` from its release or image into the cache (under its lock); True when it
    is there now. A failed download falls back to the build; a wrong checksum does not."""
    if not downloadable(config, spec):
        return False
    lock = config.tools_cache / "locks" / f"{spec.name}-{spec.version}.download.lock"
    with file_lock(lock, on_wait=lambda: say(f"waiting for another drdrill fetching "
                                              f"{spec.name}")):
        cached = from_cache(config, spec)
        if cached is None:
            staging = config.tools_cache / "download"
            staging.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=staging) as tmp:
                try:
                    fresh = download(config, spec, Path(tmp), say)
                except ToolDownloadError as exc:
                    if isinstance(exc, ChecksumMismatch):
                        raise
                    say(f"{exc.message}; building {spec.name} instead")
                    return False
                try:
                    install_into_cache(config, spec, fresh, trust_unverifiable=True)
                except Unusable as why:
                    raise ToolDownloadError(
                        f"downloaded {spec.name} but it is unusable: {why.reason}",
                        tool=spec.name, version=spec.version,
                        fix="the manifest's release/image entry may point at another "
                            "version") from None
            cached = from_cache(config, spec)
            if cached is None:
                return False
            cached = ResolvedTool(spec.name, spec.version, cached.path, "downloaded",
                                  cached.sha256)
        resolved[spec.name] = cached
    return True


def flux_crds(config: Config, *, progress: Progress | None = None) -> list[Path]:
    """The CRD YAML files of the pinned Flux controllers (tools folder, cache, or downloaded)."""
    say: Progress = progress or (lambda line: log.info("%s", line))
    version = load_manifest().flux_crds_version
    if config.tools_dir is not None and (files := yaml_files(config.tools_dir / FLUX_CRDS_DIR)):
        return files
    target = config.tools_cache / FLUX_CRDS_DIR / version
    if files := yaml_files(target):
        return files
    return fetch_flux_crds(config, target, say)
