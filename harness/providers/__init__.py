"""Cluster providers: one small protocol, optional capabilities, and an entry-point registry.

A provider is found through the `drdrill.providers` entry-point group (so a user's own provider
is a package of its own); a plugin that fails to load is logged and skipped, not fatal.
"""

from __future__ import annotations

import abc
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from harness.config import Config
from harness.errors import ConfigError
from harness.procs import Supervisor
from harness.tools import ResolvedTool

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "drdrill.providers"


@dataclass(frozen=True)
class ProviderContext:
    """What every provider is given: who it is for and where it may write."""

    run_id: str
    cluster_name: str
    workdir: Path
    """A private folder for this cluster; the provider removes what it made inside on delete."""
    config: Config
    tools: Mapping[str, ResolvedTool] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    keep: bool = False
    """The user keeps this cluster (`--keep-cluster always`): mark what is made as kept, so
    `drdrill gc` leaves it alone."""


@runtime_checkable
class ClusterProvider(Protocol):
    """Create, reach and delete one cluster."""

    name: str

    def create(self) -> None:
        """Bring the cluster up until its API answers /readyz; clean up after itself on failure."""

    def delete(self) -> None:
        """Remove everything `create` made (processes, containers, data). Idempotent. Raises
        (ProviderError) when something could not be removed: never only a log line."""

    def is_up(self) -> bool:
        """The API answers /readyz and the nodes are Ready. Asks the real cluster, never a
        file of the workdir (delete() removes those)."""

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig (mode 0600) for an admin of this cluster."""

    def dump_logs(self, dest: Path) -> list[Path]:
        """Copy the cluster's component logs into `dest`; return the files written."""

    def describe(self) -> dict[str, Any]:
        """Settings and versions that belong in the report (never secrets)."""


class ClusterLifecycle(abc.ABC):
    """What every provider's lifecycle shares: `create()` cleans up after a failed start, and
    the provider is a context manager that deletes on exit (testcontainers'
    `DockerContainer.__enter__`)."""

    @abc.abstractmethod
    def _create(self) -> None:
        """Bring the cluster up; may leave partial state behind, which create() removes."""

    @abc.abstractmethod
    def delete(self) -> None:
        """Remove everything the provider made. Idempotent."""

    def create(self) -> None:
        try:
            self._create()
        except BaseException as exc:
            try:
                self.delete()
            except Exception as cleanup:  # noqa: BLE001 - the failed create is the error to show
                exc.add_note(f"cleaning up after the failed create also failed: {cleanup}")
            raise

    def __enter__(self) -> Self:
        self.create()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.delete()


@runtime_checkable
class SupportsHostProcesses(Protocol):
    """A provider whose cluster accepts extra host processes (Flux controllers) beside it."""

    @property
    def supervisor(self) -> Supervisor:
        """Where extra processes are registered, so delete() stops them with the cluster."""

    @property
    def data_dir(self) -> Path:
        """The cluster's private data folder."""

    def ports(self, count: int) -> list[int]:
        """Free loopback ports for extra processes."""


@runtime_checkable
class SupportsFluxInstall(Protocol):
    """A provider that installs Flux its own way (in-cluster Deployments, processes on a remote
    host) instead of host processes beside the harness."""

    def install_flux(self, api: Any, tools: Mapping[str, ResolvedTool], crds: list[Path],
                     settings: Any) -> dict[str, Any]:
        """Install the pinned Flux CRDs and controllers; return the controller flags used."""


@runtime_checkable
class SupportsGitAccess(Protocol):
    """A provider whose Flux cannot reach the harness's loopback Git server directly."""

    def git_url(self, local_url: str) -> str:
        """A URL for `local_url` that the cluster's source-controller can reach (a tunnel)."""


@runtime_checkable
class SupportsLeftoverCheck(Protocol):
    """A provider that can say, from the real world, what of its cluster still exists."""

    def leftovers(self) -> list[str]:
        """Each part of the cluster that is still there after delete() (a process, a port that
        answers, a container, a folder), named; empty when everything is gone."""


def leftovers(provider: ClusterProvider) -> list[str]:
    """What of `provider`'s cluster is still there: its own check, else whether the API still
    answers."""
    if isinstance(provider, SupportsLeftoverCheck):
        return provider.leftovers()
    return [f"the {provider.name} cluster's API still answers"] if provider.is_up() else []


ProviderFactory = Callable[[ProviderContext], ClusterProvider]


@functools.cache
def registry() -> dict[str, ProviderFactory]:
    """Every provider the installed packages register; broken plugins are logged and skipped.

    Loaded once per process: plugins may import heavy libraries (python-on-whales)."""
    found: dict[str, ProviderFactory] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
            log.warning("provider plugin %r (%s) failed to load: %s", ep.name, ep.value, exc)
    if "embedded" not in found:  # running from a source tree without `pip install -e .`
        from harness.providers.embedded import EmbeddedProvider

        found["embedded"] = EmbeddedProvider
    return found


def get_provider(name: str) -> ProviderFactory:
    providers = registry()
    if name not in providers:
        raise ConfigError(f"unknown provider {name!r}",
                          fix=f"use one of: {', '.join(sorted(providers))}")
    return providers[name]
