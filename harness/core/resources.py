"""The run's one context stack: everything a drill makes is registered the moment it exists and
released in reverse order on every path (contextlib.ExitStack, with a ledger).

Unlike ExitStack, a release that fails does not stop the others: it is recorded and the rest
still run. After the releases, each resource's `leftovers` probe asks the real world what is
still there (processes, ports, containers, folders), so teardown cannot say "done" while
something of the run lives on. A resource can be *kept* (`--keep-cluster`): it is then neither
released nor counted as a leftover.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)

Release = Callable[[], None]
Probe = Callable[[], list[str]]


M = TypeVar("M", bound=AbstractContextManager[Any])


@dataclass
class Resource:
    """One thing the run made, how to release it and how to see whether it is really gone."""

    name: str
    release: Release
    leftovers: Probe | None = None
    keepable: bool = False
    """Part of the cluster the user may keep (`--keep-cluster`)."""
    released: bool = False


@dataclass
class Teardown:
    """What closing the stack did."""

    released: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """`<resource>: <error>` for each release that raised."""
    leftovers: list[str] = field(default_factory=list)
    """What the probes still found, each named."""
    kept: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failures and not self.leftovers


class Resources:
    """The run's resources, newest last."""

    def __init__(self) -> None:
        self._stack: list[Resource] = []

    def push(self, name: str, release: Release, *, leftovers: Probe | None = None,
             keepable: bool = False) -> Resource:
        """Register a resource (before or right after it comes into being)."""
        res = Resource(name, release, leftovers, keepable)
        self._stack.append(res)
        return res

    def enter(self, name: str, cm: M, *, leftovers: Probe | None = None) -> M:
        """Enter a context manager and register its exit (a server, a tunnel)."""
        cm.__enter__()

        def release() -> None:
            cm.__exit__(None, None, None)

        self.push(name, release, leftovers=leftovers)
        return cm

    def release(self, res: Resource) -> list[str]:
        """Release one resource now (the disaster deletes the cluster) and return what its
        probe still finds. It leaves the stack only when the release worked and nothing is
        left; otherwise teardown tries again and names what remains."""
        res.release()
        left = res.leftovers() if res.leftovers is not None else []
        if not left:
            res.released = True
            self._stack.remove(res)
        return left

    def close(self, *, keep: bool = False) -> Teardown:
        """Release everything in reverse order; every release runs, whatever the others did."""
        out = Teardown()
        probes: list[tuple[str, Probe]] = []
        for res in reversed(self._stack):
            if keep and res.keepable:
                out.kept.append(res.name)
                continue
            try:
                res.release()
                res.released = True
                out.released.append(res.name)
            except BaseException as exc:
                log.debug("releasing %s failed", res.name, exc_info=True)
                out.failures.append(f"{res.name}: {type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''}".rstrip())
            if res.leftovers is not None:
                probes.append((res.name, res.leftovers))
        self._stack.clear()
        for name, probe in probes:
            try:
                out.leftovers.extend(probe())
            except Exception as exc:  # noqa: BLE001 - an unanswerable probe is itself a finding
                out.leftovers.append(f"{name}: cannot check what is left ({exc})")
        return out
