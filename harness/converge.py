"""Watch Flux objects until every one is ready at the revision under test (exactly as Flux
means it), recording when each was first seen and first seen ready.

Objects are enumerated as they appear: a Kustomization that a parent applies joins the set the
moment its watch event arrives. Once seen ready at the revision an object is done, even if a
later routine reconcile flips Ready for a moment.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kubernetes import watch
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from harness.errors import DrillEnvironmentError, NotConverged, ObjectFailed
from harness.gitops.kinds import KINDS, KindSpec, by_kind
from harness.podcauses import PodCause, refused
from harness.podcauses import summary as pod_summary
from harness.report.model import CriticalHop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchedKind:
    group: str
    version: str
    plural: str
    kind: str
    readiness: str = "ready"

    @classmethod
    def of(cls, k: KindSpec) -> WatchedKind:
        return cls(k.group, k.version, k.plural, k.kind, k.readiness)


KUSTOMIZATIONS = WatchedKind.of(by_kind("Kustomization"))
GIT_REPOSITORIES = WatchedKind.of(by_kind("GitRepository"))
OCI_REPOSITORIES = WatchedKind.of(by_kind("OCIRepository"))
HELM_RELEASES = WatchedKind.of(by_kind("HelmRelease"))

DEFAULT_KINDS = (KUSTOMIZATIONS, GIT_REPOSITORIES)
SOURCE_KINDS = tuple(WatchedKind.of(by_kind(k)) for k in
                     ("GitRepository", "OCIRepository", "HelmRepository", "HelmChart", "Bucket"))
WATCHER_KINDS = tuple(WatchedKind.of(by_kind(k)) for k in ("ExternalArtifact",
                                                            "ArtifactGenerator"))


NOTIFICATION_KINDS = tuple(WatchedKind.of(k) for k in KINDS
                           if k.controller == "notification-controller")
IMAGE_KINDS = tuple(WatchedKind.of(k) for k in KINDS if k.controller in (
    "image-reflector-controller", "image-automation-controller"))


def watched_kinds(*, helm: bool, watcher: bool, notification: bool = False,
                  image: bool = False) -> tuple[WatchedKind, ...]:
    """Every kind the drill's controllers serve, from the one table (harness.gitops.kinds)."""
    return (KUSTOMIZATIONS, *SOURCE_KINDS, *((HELM_RELEASES,) if helm else ()),
            *(WATCHER_KINDS if watcher else ()), *(NOTIFICATION_KINDS if notification else ()),
            *(IMAGE_KINDS if image else ()))


# Ready=False reasons after which Flux will not get there on its own for this revision.
# Not HealthCheckFailed: kustomize-controller retries health checks at the next interval (a slow
# image pull on real nodes looks like that), so it is left to the converge deadline.
TERMINAL_REASONS = frozenset({"BuildFailed", "InvalidPath", "ArtifactFailedPermanently"})
# Ready=False reasons that mean "waiting on something else", never a failure of their own
# (HealthCheckFailed too, for the reason above).
WAITING_REASONS = frozenset({"DependencyNotReady", "Progressing", "ProgressingWithRetry",
                             "Reconciling", "NoStatus", "OtherRevision", "SourceNotReady",
                             "HelmChartNotReady", "ArtifactInStorage", "HealthCheckFailed"})
NEVER_SERVED = frozenset(k.kind for k in KINDS if not k.runnable)
"""Flux kinds whose controller the drill does not run: their CRDs never appear."""
# Ready=False reasons Flux shows while it retries: they neither start nor end a failure.
RETRYING_REASONS = frozenset({"Progressing", "ProgressingWithRetry", "Reconciling"})
STUCK_AFTER_S = 30.0
HOUSEKEEPING_S = 0.5
POD_PROBE_S = 5.0
"""How often pods are asked why they are not ready (one list call)."""
"""How often, at most, the stuck check and the progress summary (both O(objects)) run while
events stream in: per event they made a 500-Kustomization converge quadratic."""
"""A Ready=False reason and message unchanged this long (several of Flux's retries, with only
its "Progressing" in between) fail the drill with a diagnosis."""


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
    rule = _rule(kind)
    if rule == "artifact":
        got = (status.get("artifact") or {}).get("revision")
    elif kind == "Kustomization":
        # DESIGN: the *applied* revision; Ready flips ~0.1 s before lastAppliedRevision is set,
        # and lastAttemptedRevision names a commit that may not have been applied at all.
        got = status.get("lastAppliedRevision")
    else:
        got = status.get("lastAppliedRevision") or status.get("lastAttemptedRevision")
    if rule == "static" or (kind == "HelmRepository" and spec.get("type") == "oci"):
        return Readiness(True, False, "Static", "no status to wait for", got)
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
        if rule == "ready":
            at_rev = True  # HelmRelease readiness is about its chart, not the Git revision
        if at_rev:
            return Readiness(True, False, str(ready.get("reason", "")),
                             str(ready.get("message", "")), got)
        return Readiness(False, False, "OtherRevision",
                         f"ready at {got}, waiting for {revision}" if got else
                         f"no artifact yet, waiting for {revision}", got)
    reason = str(ready.get("reason", ""))
    terminal = ready.get("status") == "False" and current and reason in TERMINAL_REASONS
    return Readiness(False, terminal, reason, str(ready.get("message", "")), got)


def _rule(kind: str) -> str:
    try:
        return by_kind(kind).readiness
    except KeyError:
        return "ready"


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
    conditions: tuple[dict[str, Any], ...] = ()
    """The last status.conditions seen (type, status, reason, message)."""
    url: str | None = None
    """The remote a source fetches (spec.url / spec.endpoint)."""
    failing_since: float | None = None
    fail_key: tuple[str, str] | None = None
    fail_state: Readiness | None = None
    """(reason, message) of a Ready=False that is not a wait, and since when it holds."""
    waiting_on: str = ""
    """Why it is not ready, in words (dependency, source, health check, Flux's message)."""

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass
class ConvergeResult:
    objects: dict[str, Tracked]
    converged_after_s: float | None = None
    """None while converging, or when it never did (the objects are what was seen)."""

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
    sync_sources: frozenset[str] = frozenset({"GitRepository/flux-system/flux-system"})
    """The source(s) of the repo under test: only they, and Kustomizations built from them,
    must be at the revision; every other source is ready at its own revision."""
    stuck_after_s: float = STUCK_AFTER_S
    on_progress: Callable[[str], None] | None = None
    """Called with a one-line summary naming what holds convergence up: when it changes, and
    every few seconds (a terminal shows time moving; a CI log keeps only changes)."""
    webhooks: Mapping[str, str] = field(default_factory=dict)
    webhooks_unrunnable: bool = True
    """The cluster runs no webhook pods (embedded: kwok), so a webhook failure is the drill's."""
    own_urls: tuple[str, ...] = ()
    """URLs of the drill's own Git server: a failure to reach them is not a remote's."""
    """Admission webhook name -> what installs it (from preflight), for diagnoses."""
    pod_probe: Callable[[], list[PodCause]] | None = None
    """Why pods are not ready (pulls, crash loops, scheduling); None where pods are simulated."""
    egress_policy: str | None = None
    """`mirror`: a failed image pull cannot heal (nothing but the mirror is reachable), so it
    fails the drill as broken at once."""
    objects: dict[str, Tracked] = field(default_factory=dict)
    pod_causes: list[PodCause] = field(default_factory=list)

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
        last_summary, last_at, last_check = "", 0.0, -HOUSEKEEPING_S
        last_pods = -POD_PROBE_S
        try:
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise NotConverged(
                        f"not converged at {self.revision} within {timeout_s:.0f}s"
                        + (f"; pods: {pod_summary(self.pod_causes)}" if self.pod_causes
                           else ""), self._pending())
                try:
                    item = events.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    item = None
                if isinstance(item, BaseException):
                    raise item
                now = self.clock() - start
                if item is not None:
                    kind, etype, obj = item
                    # Only an object turning ready (or going away) can complete convergence:
                    # the O(objects) check runs on those events, not on each of thousands.
                    if self._fold(kind, etype, obj, now) and self._done():
                        return ConvergeResult(dict(self.objects), self.clock() - start)
                if now - last_check < HOUSEKEEPING_S:
                    continue  # a burst of events: stuck checks and the summary can wait
                last_check = now
                self.check_stuck(now)
                if self.pod_probe is not None and now - last_pods >= POD_PROBE_S:
                    last_pods = now
                    self.check_pods()
                if self.on_progress is None:
                    continue
                summary = self.summary()
                if summary != last_summary or now - last_at >= 3.0:
                    last_summary, last_at = summary, now
                    self.on_progress(summary)
        finally:
            # No join: a stopped watch ends at its next event or when its connection closes
            # (teardown), and waiting up to 0.2 s per kind here added that to every TTR.
            stop.set()

    # -- folding -----------------------------------------------------------------------------
    def _fold(self, kind: WatchedKind, etype: str, obj: dict[str, Any], now: float) -> bool:
        """Fold one watch event in; True if it made an object ready or removed one (the
        only events after which convergence can be complete)."""
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        ref = f"{kind.kind}/{ns}/{name}"
        if etype == "DELETED":
            tracked = self.objects.get(ref)
            if tracked is not None and tracked.ready_after_s is None:
                self.objects.pop(ref)
                return True
            return False
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
        tracked.conditions = tuple(
            {k: c.get(k) for k in ("type", "status", "reason", "message")}
            for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, dict))
        url = spec.get("url") or spec.get("endpoint")
        tracked.url = str(url) if url else None
        if tracked.ready_after_s is not None:
            if tracked.revision is None:  # Ready can land a status patch before the artifact
                tracked.revision = readiness(obj, kind.kind, revision=self.revision).revision
            return False
        state = readiness(obj, kind.kind, revision=self.revision,
                          expect_revision=self._expects_revision(ref, kind.kind, tracked))
        tracked.last = state
        tracked.revision = state.revision
        tracked.waiting_on = self._why(tracked, state)
        key = (state.reason, state.message)
        missing_source = _waits_on_source(state) and tracked.source is not None and \
            tracked.source not in self.objects and tracked.source not in self.expected
        if missing_source:
            # Waiting on a source that does not exist is a failure once nothing creates it.
            tracked.waiting_on = f"source {tracked.source}, which is not in the cluster"
        if state.reason in RETRYING_REASONS:
            pass  # Flux retrying: the failure before it still holds until another replaces it
        elif state.ready or state.reason in WAITING_REASONS or \
                (_waits_on_source(state) and not missing_source):
            tracked.failing_since, tracked.fail_key, tracked.fail_state = None, None, None
        elif tracked.fail_key != key:
            tracked.failing_since, tracked.fail_key, tracked.fail_state = now, key, state
        if state.failed:
            self.fail(tracked, state)
        if _no_crd(state.message) in NEVER_SERVED or _GATE_OFF.search(state.message):
            self.fail(tracked, state)  # no CRD or gate will ever come: fail at once
        if state.ready:
            tracked.ready_after_s = now
            if self.on_progress is not None:
                # One line per object in a CI log, beside the (throttled) summary.
                done = sum(1 for t in self.objects.values() if t.ready_after_s is not None)
                self.on_progress(f"ready: {ref} after {now:.1f}s "
                                 f"({done}/{len(self._all_refs())})")
            if self.on_change is not None:
                done = sum(1 for t in self.objects.values() if t.ready_after_s is not None)
                self.on_change(done, len(self._all_refs()), tracked)
            return True
        return False

    def _expects_revision(self, ref: str, kind: str, tracked: Tracked) -> bool:
        if ref in self.revision_free:
            return False
        rule = _rule(kind)
        if rule == "artifact":
            return ref in self.sync_sources
        if rule == "applied":
            return tracked.source is None or tracked.source in self.sync_sources
        return False

    def _why(self, t: Tracked, state: Readiness) -> str:
        if state.ready:
            return ""
        if state.reason == "DependencyNotReady" or "dependency" in state.message.lower():
            pending = [d for d in t.depends_on if not self._ready(f"{t.kind}/{d}")]
            return f"dependency {', '.join(pending) or state.message} not ready"
        if _waits_on_source(state) and t.source:
            return f"source {t.source} not ready"
        if "health check" in state.message.lower() or (state.reason == "Progressing" and \
                "wait" in state.message.lower()):
            return f"health check: {_first_line(state.message)}"
        if state.reason == "OtherRevision":
            return state.message
        return f"{state.reason}: {_first_line(state.message)}" if state.reason else \
            _first_line(state.message)

    def _ready(self, ref: str) -> bool:
        t = self.objects.get(ref)
        return t is not None and t.ready_after_s is not None

    def check_stuck(self, now: float) -> None:
        """Fail on an object whose failure has not changed across Flux's retries."""
        for t in self.objects.values():
            if t.ready_after_s is None and t.failing_since is not None and \
                    t.fail_state is not None and now - t.failing_since >= self.stuck_after_s:
                self.fail(t, t.fail_state, held_s=now - t.failing_since)

    def fail(self, t: Tracked, state: Readiness, *, held_s: float | None = None) -> None:
        """Raise the failure with its diagnosis: DrillEnvironmentError ("broken") when the
        cause is the drill's own environment, else ObjectFailed ("failed": the repo's)."""
        text = self.diagnose(t, state, held_s=held_s)
        cause = self.environment_cause(t, state)
        if cause is not None:
            if self.on_progress is not None:
                self.on_progress(f"broken: {t.ref}: {cause[0]}: {_first_line(text)}")
            raise DrillEnvironmentError(t.ref, state.reason, text, cause[0], fix=cause[1])
        raise self._failed(t.ref, state.reason, text)

    def environment_cause(self, t: Tracked, state: Readiness) -> tuple[str, str] | None:
        """(cause, fix) when the failure comes from what the drill provides, not the repo: a
        controller or feature gate it did not run, a remote it cannot reach, a webhook whose
        pod the embedded cluster cannot run."""
        msg = state.message
        kind = _no_crd(msg)
        spec = next((x for x in KINDS if x.kind == kind), None) if kind else None
        if spec is not None and kind in NEVER_SERVED:
            return (f"controller {spec.controller} (kind {kind}) is not run by this drill",
                    f"drill with a provider that runs {spec.controller}")
        gate = _GATE_OFF.search(msg)
        if gate:
            return (f"feature gate {gate.group(1)} was not enabled on the controller that "
                    f"reconciles {t.kind}",
                    f"set --feature-gates={gate.group(1)}=true in the repo's flux-system "
                    "patches or FluxInstance (drdrill runs the repo's settings), and check "
                    "the report's Flux settings")
        hook = WEBHOOK_CALL.search(msg)
        if hook:
            if self.webhooks_unrunnable:
                return (f"admission webhook {hook.group(1)} has no pod: the embedded cluster "
                        "runs no containers", "drill this repo with --provider kind or lab")
            return None  # a real cluster: the webhook's pod is the repo's (ordering, health)
        if _UNREACHABLE.search(msg):
            url = t.url if t.url and t.kind in _FETCHING else None
            url = url or next((u for u in _URL.findall(msg) if not _in_cluster(u)), None)
            if url and any(url.startswith(own.rstrip("/")) for own in self.own_urls):
                return (f"the drill's own Git server {url} is unreachable from the cluster",
                        "see the provider's network in the report (a drdrill bug or a host "
                        "firewall)")
            if url:
                return (f"remote {url} is unreachable from the drill",
                        f"let the drill reach {url} (network or --provider egress), or "
                        "mirror it; a real recovery needs it reachable")
        return None

    def _failed(self, ref: str, reason: str, why: str) -> ObjectFailed:
        """The error for an object that failed, said on the progress line first."""
        if self.on_progress is not None:
            self.on_progress(f"failed: {ref}: {reason}: {_first_line(why)}")
        return ObjectFailed(ref, reason, why)

    def check_pods(self) -> None:
        """Read the pods' causes; under the `mirror` egress policy a failed pull is final."""
        assert self.pod_probe is not None
        try:
            self.pod_causes = self.pod_probe()
        except Exception as exc:  # noqa: BLE001 - a probe must not end the watch
            log.debug("pod probe failed: %s", exc)
            return
        if self.egress_policy == "mirror":
            pull = next((c for c in self.pod_causes if c.is_pull), None)
            if pull is not None:
                raise refused(pull, self.egress_policy)

    def diagnose(self, t: Tracked, state: Readiness, *, held_s: float | None = None) -> str:
        """Flux's message plus what it means for a drill: the URL a source could not fetch,
        the kind that has no CRD, the webhook nobody answers for."""
        msg = state.message
        held = f" (unchanged for {held_s:.0f}s of Flux's retries)" if held_s else ""
        parts = [f"{_whole(msg)}{held}"]
        if t.url and t.kind in ("GitRepository", "OCIRepository", "HelmRepository", "Bucket"):
            parts.append(f"cannot fetch {t.url}: this recovery needs that remote reachable "
                         "(an external dependency)")
        kind = _no_crd(msg)
        if kind:
            try:
                k = next(x for x in KINDS if x.kind == kind)
                parts.append(f"kind {kind} has no CRD in the cluster: it is served by "
                             f"{k.controller}, which this drill does not run")
            except StopIteration:
                parts.append(f"kind {kind} has no CRD in the cluster: install its CRD first "
                             "(dependsOn the Kustomization or HelmRelease that ships it)")
        hook = WEBHOOK_CALL.search(msg)
        if hook:
            name = hook.group(1)
            who = self.webhooks.get(name) or next(
                (v for k, v in self.webhooks.items() if k in name or name.endswith(k)),
                None)
            parts.append(f"admission webhook {name}" + (f" (installed by {who})" if who else "")
                         + " has no running pod behind it: the embedded cluster (kwok) runs no "
                           "containers; drill this repo with --provider kind or lab")
        return "; ".join(parts)

    def summary(self) -> str:
        """`converge: 3/7 ready; waiting on A (why), B (why)` — the objects that hold the rest
        up first (those not merely waiting on a dependency)."""
        refs = self._all_refs()
        done = sum(1 for r in refs if self._ready(r))
        pending = [self.objects[r] for r in sorted(refs) if r in self.objects
                   and self.objects[r].ready_after_s is None]
        unseen = [r for r in sorted(refs) if r not in self.objects]
        blocking = sorted(pending, key=lambda t: (t.waiting_on.startswith("dependency"),
                                                  t.waiting_on.startswith("source"), t.ref))
        shown = [f"{t.ref} ({t.waiting_on or 'no status yet'})" for t in blocking[:3]]
        shown += [f"{r} (not applied yet)" for r in unseen[:max(0, 3 - len(shown))]]
        more = len(pending) + len(unseen) - len(shown)
        return (f"converge: {done}/{len(refs)} ready" +
                (f"; waiting on {', '.join(shown)}" if shown else "") +
                (f" and {more} more" if more > 0 else "") +
                (f"; pods: {pod_summary(self.pod_causes)}" if self.pod_causes else ""))

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
                if t.waiting_on and last and t.waiting_on != f"{last.reason}: {last.message}":
                    out[ref] += f" [waiting on {t.waiting_on}]"
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


WEBHOOK_CALL = re.compile(r'failed calling webhook \\?"([^"\\]+)\\?"')
_GATE_OFF = re.compile(r"([A-Z][A-Za-z0-9]+) feature gate is disabled")
_UNREACHABLE = re.compile(
    r"dial tcp|no such host|connection refused|i/o timeout|network is unreachable|"
    r"TLS handshake timeout|Client\.Timeout|server misbehaving|name resolution|"
    r"connection reset by peer|no route to host", re.IGNORECASE)
_URL = re.compile(r"""(?:https?|oci|ssh)://[^\s"'\\,;)]+""")
_FETCHING = frozenset({"GitRepository", "OCIRepository", "HelmRepository", "Bucket"})
_NO_MATCH = re.compile(r'no matches for kind \\?"?([A-Za-z0-9]+)\\?"?')


def _in_cluster(url: str) -> bool:
    """A Service address (`x.ns.svc`, `….cluster.local`): not a remote of the recovery."""
    host = (urlsplit(url).hostname or "").rstrip(".")
    return host.endswith((".svc", ".cluster.local"))


def _no_crd(message: str) -> str | None:
    m = _NO_MATCH.search(message)
    return m.group(1) if m else None


def _waits_on_source(state: Readiness) -> bool:
    msg = state.message.lower()
    return state.reason in ("ArtifactFailed", "SourceNotReady") and (
        "not found" in msg or "not ready" in msg or "retrying" in msg)


def _first_line(text: str) -> str:
    """A message on one line for a progress line: every line kept (kustomize puts its cause
    after the first newline), and a long one keeps its head and its tail (where the cause is)."""
    line = " ⏎ ".join(x.strip() for x in text.strip().splitlines() if x.strip())
    return line if len(line) <= 300 else line[:150] + " … " + line[-147:]


def _whole(text: str, limit: int = 4000) -> str:
    """Flux's message as the report keeps it: every line; only a huge one is cut (in the
    middle, so the cause at the end survives)."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit // 2] + "\n…\n" + text[-limit // 2:]


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

