"""Watch Flux objects until every one is ready at the revision under test (exactly as Flux
means it), recording when each was first seen and first seen ready.

Objects are enumerated as they appear: a Kustomization that a parent applies joins the set the
moment its watch event arrives. Once seen ready at the revision an object is done, even if a
later routine reconcile flips Ready for a moment.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import watch
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from harness.errors import NotConverged, ObjectFailed
from harness.report.model import CriticalHop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchedKind:
    group: str
    version: str
    plural: str
    kind: str


KUSTOMIZATIONS = WatchedKind("kustomize.toolkit.fluxcd.io", "v1", "kustomizations",
                             "Kustomization")
GIT_REPOSITORIES = WatchedKind("source.toolkit.fluxcd.io", "v1", "gitrepositories",
                               "GitRepository")
OCI_REPOSITORIES = WatchedKind("source.toolkit.fluxcd.io", "v1", "ocirepositories",
                               "OCIRepository")
HELM_RELEASES = WatchedKind("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease")

DEFAULT_KINDS = (KUSTOMIZATIONS, GIT_REPOSITORIES)

# Ready=False reasons after which Flux will not get there on its own for this revision.
# Not HealthCheckFailed: kustomize-controller retries health checks at the next interval (a slow
# image pull on real nodes looks like that), so it is left to the converge deadline.
TERMINAL_REASONS = frozenset({"BuildFailed", "InvalidPath", "ArtifactFailedPermanently"})


def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


@dataclass(frozen=True)
class Readiness:
    ready: bool
    failed: bool
    reason: str
    message: str
    revision: str | None


def readiness(obj: Mapping[str, Any], kind: str, *, revision: str,
              expect_revision: bool = True) -> Readiness:
    """Flux's rule: Ready=True for the current generation and (where it applies) the applied
    revision is the one under test; Stalled or suspended fail at once."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    generation = meta.get("generation")
    if kind == "GitRepository" or kind == "OCIRepository":
        got = (status.get("artifact") or {}).get("revision")
    else:
        got = status.get("lastAppliedRevision") or status.get("lastAttemptedRevision")
    if spec.get("suspend"):
        return Readiness(False, True, "Suspended", "spec.suspend is true", got)
    stalled = _condition(obj, "Stalled")
    if stalled and stalled.get("status") == "True":
        return Readiness(False, True, f"Stalled/{stalled.get('reason')}",
                         str(stalled.get("message", "")), got)
    ready = _condition(obj, "Ready")
    if ready is None:
        return Readiness(False, False, "NoStatus", "no Ready condition yet", got)
    current = ready.get("observedGeneration", status.get("observedGeneration")) == generation
    if ready.get("status") == "True" and current:
        at_rev = (not expect_revision) or (got is not None and _same_revision(got, revision))
        if kind not in ("GitRepository", "OCIRepository") and kind != "Kustomization":
            at_rev = True  # HelmRelease readiness is about its chart, not the Git revision
        if at_rev:
            return Readiness(True, False, str(ready.get("reason", "")),
                             str(ready.get("message", "")), got)
        return Readiness(False, False, "OtherRevision", f"ready at {got}, waiting for {revision}",
                         got)
    reason = str(ready.get("reason", ""))
    terminal = ready.get("status") == "False" and current and reason in TERMINAL_REASONS
    return Readiness(False, terminal, reason, str(ready.get("message", "")), got)


def _same_revision(got: str, want: str) -> bool:
    """`main@sha1:abc…` matches `main@sha1:abc…` and a bare SHA matches its suffix."""
    return got == want or got.rsplit(":", 1)[-1] == want.rsplit(":", 1)[-1]


@dataclass
class Tracked:
    kind: str
    namespace: str
    name: str
    first_seen_s: float
    depends_on: tuple[str, ...] = ()
    ready_after_s: float | None = None
    revision: str | None = None
    last: Readiness | None = None
    parent: str | None = None
    source: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass
class ConvergeResult:
    objects: dict[str, Tracked]

    def critical_path(self) -> list[CriticalHop]:
        return critical_path(self.objects)


def _owner_ref(obj: Mapping[str, Any]) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name = labels.get("kustomize.toolkit.fluxcd.io/name")
    ns = labels.get("kustomize.toolkit.fluxcd.io/namespace")
    return f"Kustomization/{ns}/{name}" if name and ns else None


@dataclass
class Converger:
    """Runs one watch thread per kind and folds their events into `Tracked` objects."""

    api: Any
    revision: str
    """The GitRepository artifact revision under test, e.g. `main@sha1:<sha>`."""
    expected: set[str]
    """Refs (`Kind/ns/name`) that must become ready even before they are first seen."""
    kinds: tuple[WatchedKind, ...] = DEFAULT_KINDS
    clock: Callable[[], float] = time.monotonic
    start: float | None = None
    on_change: Callable[[int, int, Tracked], None] | None = None
    revision_free: frozenset[str] = frozenset()
    """Refs whose revision is not the repo under test (other sources): Ready is enough."""
    objects: dict[str, Tracked] = field(default_factory=dict)

    def run(self, *, timeout_s: float) -> ConvergeResult:
        start = self.start if self.start is not None else self.clock()
        deadline = self.clock() + timeout_s
        events: queue.Queue[tuple[WatchedKind, str, dict[str, Any]] | BaseException] = \
            queue.Queue()
        stop = threading.Event()
        threads = [threading.Thread(target=self._watch, args=(k, events, stop, deadline),
                                    name=f"watch-{k.plural}", daemon=True) for k in self.kinds]
        for t in threads:
            t.start()
        try:
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise NotConverged(
                        f"not converged at {self.revision} within {timeout_s:.0f}s",
                        self._pending())
                try:
                    item = events.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if isinstance(item, BaseException):
                    raise item
                kind, etype, obj = item
                self._fold(kind, etype, obj, self.clock() - start)
                if self._done():
                    return ConvergeResult(dict(self.objects))
        finally:
            # No join: a stopped watch ends at its next event or when its connection closes
            # (teardown), and waiting up to 0.2 s per kind here added that to every TTR.
            stop.set()

    # -- folding -----------------------------------------------------------------------------
    def _fold(self, kind: WatchedKind, etype: str, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        ref = f"{kind.kind}/{ns}/{name}"
        if etype == "DELETED":
            tracked = self.objects.get(ref)
            if tracked is not None and tracked.ready_after_s is None:
                self.objects.pop(ref)
            return
        spec = obj.get("spec") or {}
        tracked = self.objects.get(ref)
        if tracked is None:
            deps = tuple(f"{d.get('namespace') or ns}/{d['name']}"
                         for d in spec.get("dependsOn") or [] if isinstance(d, dict))
            src = spec.get("sourceRef") or {}
            source = (f"{src.get('kind')}/{src.get('namespace') or ns}/{src.get('name')}"
                      if src else None)
            tracked = Tracked(kind.kind, ns, name, now, deps, parent=_owner_ref(obj),
                              source=source)
            self.objects[ref] = tracked
        if tracked.ready_after_s is not None:
            return
        state = readiness(obj, kind.kind, revision=self.revision,
                          expect_revision=ref not in self.revision_free)
        tracked.last = state
        tracked.revision = state.revision
        if state.failed:
            raise ObjectFailed(ref, state.reason, state.message)
        if state.ready:
            tracked.ready_after_s = now
            if self.on_change is not None:
                done = sum(1 for t in self.objects.values() if t.ready_after_s is not None)
                self.on_change(done, len(self._all_refs()), tracked)

    def _all_refs(self) -> set[str]:
        return set(self.objects) | self.expected

    def _done(self) -> bool:
        return all(ref in self.objects and self.objects[ref].ready_after_s is not None
                   for ref in self._all_refs())

    def _pending(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ref in sorted(self._all_refs()):
            t = self.objects.get(ref)
            if t is None:
                out[ref] = "never appeared in the cluster"
            elif t.ready_after_s is None:
                last = t.last
                out[ref] = (f"{last.reason}: {last.message}" if last else "no status yet")
        return out

    # -- watching ----------------------------------------------------------------------------
    def _watch(self, kind: WatchedKind, events: queue.Queue[Any], stop: threading.Event,
               deadline: float) -> None:
        api = CustomObjectsApi(self.api)
        backoff = 0.1
        resource_version: str | None = None
        while not stop.is_set() and self.clock() < deadline:
            try:
                if resource_version is None:
                    listing = api.list_cluster_custom_object(kind.group, kind.version, kind.plural)
                    for item in listing.get("items", []):
                        events.put((kind, "ADDED", item))
                    resource_version = listing["metadata"]["resourceVersion"]
                w = watch.Watch()
                stream = w.stream(api.list_cluster_custom_object, kind.group, kind.version,
                                  kind.plural, resource_version=resource_version,
                                  timeout_seconds=max(1, min(30, int(deadline - self.clock()))),
                                  allow_watch_bookmarks=True)
                for event in stream:
                    if stop.is_set():
                        w.stop()
                        return
                    obj = event["object"]
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        resource_version = rv
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        events.put((kind, event["type"], obj))
                backoff = 0.1
            except ApiException as exc:
                if exc.status == 410:  # the watch expired: list again, nothing is missed
                    resource_version = None
                    continue
                log.debug("watch %s: %s; retrying", kind.plural, exc.reason)
                time.sleep(min(backoff, max(0.0, deadline - self.clock())))
                backoff = min(backoff * 2, 2.0)
            except (Urllib3Error, OSError, ValueError) as exc:
                log.debug("watch %s dropped: %s; resuming", kind.plural, exc)
                time.sleep(min(backoff, max(0.0, deadline - self.clock())))
                backoff = min(backoff * 2, 2.0)
            except Exception:
                if stop.is_set():
                    return  # the drill is past this watch; its client may be closed already
                raise


def critical_path(objects: Mapping[str, Tracked]) -> list[CriticalHop]:
    """The chain that finished last: from the last-ready object back through whichever of its
    dependencies, its parent Kustomization or its source held it up the longest."""
    ready = {r: t for r, t in objects.items() if t.ready_after_s is not None}
    if not ready:
        return []
    by_key = {f"{t.kind}:{t.namespace}/{t.name}": t for t in ready.values()}
    current: Tracked | None = max(ready.values(), key=lambda t: t.ready_after_s or 0.0)
    hops: list[CriticalHop] = []
    visited: set[str] = set()
    while current is not None and current.ref not in visited:
        visited.add(current.ref)
        preds: list[tuple[float, Tracked]] = []
        for dep in current.depends_on:
            d = by_key.get(f"{current.kind}:{dep}")
            if d is not None and d.ready_after_s is not None:
                preds.append((d.ready_after_s, d))
        for ref in (current.parent, current.source):
            p = ready.get(ref) if ref else None
            if p is not None and p.ready_after_s is not None:
                # A parent applies its children before it is itself ready: the child cannot
                # have waited past its own first sighting on the parent.
                t = p.ready_after_s if ref == current.source else min(
                    p.ready_after_s, current.first_seen_s)
                preds.append((t, p))
        assert current.ready_after_s is not None
        dep_ready = max((t for t, _ in preds), default=current.first_seen_s)
        start = max(current.first_seen_s, dep_ready)
        dep_wait = max(0.0, max((t for t, p in preds if p.ref != current.parent),
                                default=current.first_seen_s) - current.first_seen_s)
        hops.append(CriticalHop(current.ref, round(current.ready_after_s, 3), round(dep_wait, 3),
                                round(max(0.0, current.ready_after_s - start), 3)))
        current = max(preds, key=lambda tp: tp[0])[1] if preds else None
    hops.reverse()
    return hops

