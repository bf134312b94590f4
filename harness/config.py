"""Harness settings: one frozen dataclass, filled from DRDRILL_* variables through one table."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from harness.errors import ConfigError


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "drdrill"


@dataclass(frozen=True)
class Config:
    """Where drdrill keeps things and how eagerly it builds."""

    cache_dir: Path = field(default_factory=_default_cache)
    tools_dir: Path | None = None
    """A folder holding the pinned binaries; checked before PATH, the cache and a build."""
    allow_build: bool = True
    """Build missing binaries from the Go module proxy with the machine's Go."""
    go: str = "go"
    state_dir: Path | None = None
    """Where run state (data dirs, run records for `drdrill gc`) lives; default under cache_dir."""
    flux_profile: str = "repo"
    """The Flux settings a drill runs when `--flux-profile` is not given: `repo` (the repo's own,
    Flux's defaults elsewhere) or `fast` (drill-only tuning; drdrill's own test suite uses it)."""
    mirror_dir: Path | None = None
    """Where the registry mirror keeps images and charts across runs; default
    `<cache_dir>/mirror`."""
    allow_download: bool = False
    """Fetch missing binaries from their official releases / OCI images (checksums verified)
    before building them. Off unless asked for (DRDRILL_ALLOW_DOWNLOAD=1, or a release/OCI
    mirror is named): drdrill reaches no host on its own that the user did not choose."""
    release_mirror: str | None = None
    """A base URL laid out like the release sites (`<base>/github.com/...`, `<base>/dl.k8s.io/
    ...`) that stands in for them: an air-gapped mirror, or the tests' local server."""
    oci_mirror: str | None = None
    """`ghcr.io=http://127.0.0.1:5000,...`: registries that stand in for the images' own."""

    @property
    def tools_cache(self) -> Path:
        return self.cache_dir / "tools"

    @property
    def runs_dir(self) -> Path:
        return (self.state_dir or self.cache_dir / "runs")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Config:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for var, (name, parse) in _ENV.items():
            raw = env.get(var)
            if raw:
                try:
                    values[name] = parse(raw)
                except ValueError as exc:
                    raise ConfigError(f"environment variable {var}={raw!r} is invalid: {exc}",
                                      fix=f"unset {var} or give it a valid value") from exc
        known = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if k in known and v is not None})
        return replace(cls(), **values)  # type: ignore[arg-type]


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _profile(raw: str) -> str:
    if raw not in ("repo", "fast"):
        raise ValueError("expected repo or fast")
    return raw


_ENV: dict[str, tuple[str, Callable[[str], object]]] = {
    "DRDRILL_CACHE_DIR": ("cache_dir", Path),
    "DRDRILL_TOOLS_DIR": ("tools_dir", Path),
    "DRDRILL_ALLOW_BUILD": ("allow_build", _bool),
    "DRDRILL_GO": ("go", str),
    "DRDRILL_STATE_DIR": ("state_dir", Path),
    "DRDRILL_FLUX_PROFILE": ("flux_profile", _profile),
    "DRDRILL_MIRROR_DIR": ("mirror_dir", Path),
    "DRDRILL_ALLOW_DOWNLOAD": ("allow_download", _bool),
    "DRDRILL_RELEASE_MIRROR": ("release_mirror", str),
    "DRDRILL_OCI_MIRROR": ("oci_mirror", str),
}
