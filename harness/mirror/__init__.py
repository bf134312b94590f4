"""The drill's registry mirror and egress policy: a pinned registry with a cache that outlives
runs, prefetch/import into it, and what kind nodes and Flux sources need to use it."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from harness.config import Config
from harness.mirror.server import MirrorRegistry, mirror_dir


def open_mirror(config: Config, *, host: str = "127.0.0.1", port: int = 0,
                run_id: str | None = None, work_dir: Path | None = None) -> MirrorRegistry:
    """A MirrorRegistry over the shared cache (enter it to start), with the pinned registry
    binary resolved (built from the Go module proxy when missing)."""
    from harness.tools import MIRROR_TOOLS, ensure_tools

    binary = ensure_tools(config, MIRROR_TOOLS)["registry"].path
    rid = run_id or f"mirror-{uuid.uuid4().hex[:8]}"
    if work_dir is None:  # its config and log are the caller's only while it runs
        return MirrorRegistry(binary, mirror_dir(config), Path(tempfile.mkdtemp(
            prefix="drdrill-mirror-")), rid, host=host, port=port, remove_work_dir=True)
    return MirrorRegistry(binary, mirror_dir(config), work_dir, rid, host=host, port=port)


__all__ = ["MirrorRegistry", "mirror_dir", "open_mirror"]
