"""Pinned binaries: one manifest (`harness/tools.toml`), resolved from a folder, PATH or the
cache (`resolve`), else built from the Go module proxy (`build`); `ensure` ties them together.

The names below are what the rest of drdrill uses; the submodules are the implementation.
"""

from __future__ import annotations

from harness.tools.ensure import ensure_tools, flux_crds
from harness.tools.manifest import (
    ALL_TOOL_NAMES,
    BENCH_TOOLS,
    CI_TOOLS,
    EMBEDDED_TOOLS,
    FLUX_CRDS_DIR,
    FLUX_TOOLS,
    HELM_TOOLS,
    IMAGE_TOOLS,
    KIND_TOOLS,
    MIRROR_TOOLS,
    NOTIFICATION_TOOLS,
    ON_DEMAND_TOOLS,
    TOOL_NAMES,
    WATCHER_TOOLS,
    Manifest,
    ManifestInvalid,
    ToolSpec,
    flux_release,
    flux_version,
    load_manifest,
    parse_manifest,
    pins_digest,
)
from harness.tools.resolve import (
    ResolvedTool,
    cache_path,
    check_version,
    list_tools,
    resolve_existing,
    sha256_file,
)

__all__ = [
    "ALL_TOOL_NAMES",
    "BENCH_TOOLS",
    "CI_TOOLS",
    "EMBEDDED_TOOLS",
    "FLUX_CRDS_DIR",
    "FLUX_TOOLS",
    "HELM_TOOLS",
    "IMAGE_TOOLS",
    "KIND_TOOLS",
    "MIRROR_TOOLS",
    "NOTIFICATION_TOOLS",
    "ON_DEMAND_TOOLS",
    "TOOL_NAMES",
    "WATCHER_TOOLS",
    "Manifest",
    "ManifestInvalid",
    "ResolvedTool",
    "ToolSpec",
    "cache_path",
    "check_version",
    "ensure_tools",
    "flux_crds",
    "flux_release",
    "flux_version",
    "list_tools",
    "load_manifest",
    "parse_manifest",
    "pins_digest",
    "resolve_existing",
    "sha256_file",
]
