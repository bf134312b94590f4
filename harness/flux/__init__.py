"""Flux on a drill's cluster: settings -> flags (`settings`), installing the controllers as
processes or pods (`install`). Providers get Flux only through this package."""

from __future__ import annotations

from harness.flux.install import (
    FLUX_NAMESPACE,
    SYNC_NAME,
    FluxRuntime,
    flux_images,
    flux_manifests,
    install_flux_in_cluster,
    sync_objects,
)
from harness.flux.settings import FluxSettings, HostAddrs, controller_flags

__all__ = ["FLUX_NAMESPACE", "SYNC_NAME", "FluxRuntime", "FluxSettings", "HostAddrs",
           "controller_flags", "flux_images", "flux_manifests", "install_flux_in_cluster",
           "sync_objects"]
