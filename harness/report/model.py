"""The recovery report as data; every output format is a writer over `DrillReport`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 2
"""2: `recovery_figures[]` and `recovery_figure`, `automated_steps[]` (drdrill's own actions,
out of the manual count), time-to-ready ends when the workloads are rolled out.
Added since, compatibly (a reader of 2 may ignore them): `interrupted_by` (the signal that
stopped the drill) and `output_lost[]` (a closed console, a listener that raised)."""

Verdict = Literal["passed", "failed", "broken"]
Outcome = Literal["passed", "failed", "broken", "skipped"]


@dataclass(frozen=True)
class PhaseRecord:
    """One timed phase. `round` is 1 for the first build, 2 for the rebuild after the disaster."""

    name: str
    started_at: str
    """ISO-8601 UTC wall-clock time the phase started."""
    duration_s: float
    outcome: Outcome
    error: str | None = None
    round: int = 1
    offset_s: float = 0.0
    """Seconds from the drill's start (monotonic clock) to the phase's start."""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectRecord:
    """A Flux object and when the harness first saw it ready at the revision under test."""

    kind: str
    namespace: str
    name: str
    ready_after_s: float | None
    """Seconds from the start of the round's recovery (provision start) until seen ready."""
    revision: str | None
    depends_on: tuple[str, ...] = ()
    """`namespace/name` of each dependency (same kind)."""
    round: int = 1
    first_seen_s: float | None = None
    """Seconds from the round's recovery start until the object first existed in the cluster."""
    ready: bool = False
    message: str | None = None
    reason: str | None = None
    """The Ready condition's reason when last seen."""
    conditions: tuple[dict[str, Any], ...] = ()
    """status.conditions when last seen (type, status, reason, message)."""
    waiting_on: str | None = None
    """Why it was not ready: a dependency, its source, a health check, Flux's message."""
    url: str | None = None
    """The remote a source object fetches."""

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ManualStep:
    id: str
    description: str
    performed_by: str
    duration_s: float
    automatable: bool
    round: int = 1


@dataclass(frozen=True)
class FigureItem:
    """One object's (or one target's) share of a recovery figure."""

    ref: str
    value_s: float | None
    """None: never recovered (e.g. a drifted object Flux did not revert)."""
    note: str = ""


@dataclass(frozen=True)
class RecoveryFigure:
    """A scenario's own measure of recovery (time-to-revert, time-to-rollback, time lost, ...)."""

    name: str
    """Stable key, e.g. `time_to_revert_s`."""
    label: str
    """Human label, e.g. `time-to-revert`."""
    value_s: float | None
    """None when it was never reached."""
    description: str
    items: tuple[FigureItem, ...] = ()
    limit_s: float | None = None
    """The bound the scenario's expectation holds it to, if any."""
    met: bool | None = None
    """Whether the expectation on this figure held (None: not judged)."""


@dataclass(frozen=True)
class CriticalHop:
    """One object on the critical path and where its time went."""

    ref: str
    ready_after_s: float
    waited_on_dependency_s: float
    reconcile_s: float
    """Time from its last dependency being ready (or first seen) until it was ready:
    Flux's requeue interval, apply and health checks together."""
    split: Mapping[str, float | int | None] | None = None
    """The reconcile as the controller logged it (harness.flux.hops.HopSplit.to_dict):
    requeue delay, fetch + build + apply, health checks; None where no log said."""


@dataclass(frozen=True)
class DrillReport:
    run_id: str
    scenario: str
    provider: str
    repo: str
    revision: str
    verdict: Verdict
    started_at: str
    time_to_ready_s: float | None
    """Recovery start (first action after the disaster) until converged; None if never."""
    rto_target_s: float | None
    phases: tuple[PhaseRecord, ...]
    objects: tuple[ObjectRecord, ...]
    manual_steps: tuple[ManualStep, ...]
    critical_path: tuple[CriticalHop, ...]
    settings: dict[str, Any]
    """`flux_flags`, `versions` (tool -> version), `provider` options, local-run changes."""
    diagnostics: dict[str, str]
    """Label -> path (relative to the report dir) of each collected diagnostic file."""
    error: str | None = None
    cluster: str = ""
    manual_inputs: tuple[dict[str, Any], ...] = ()
    """The manual-step inventory preflight built from the repo (kind, ns, name, needed_by)."""
    notes: tuple[str, ...] = ()
    external_dependencies: tuple[dict[str, Any], ...] = ()
    """Remotes the recovery needs reachable (url, kind, used_by), from preflight."""
    embedded_limits: tuple[dict[str, Any], ...] = ()
    """Objects the embedded cluster cannot converge (object, why, providers that can)."""
    schema_version: int = SCHEMA_VERSION
    recovery_round: int = 2
    """The round whose time-to-ready is the headline: the scenario's last (2 for a rebuild)."""
    leftovers: tuple[str, ...] = ()
    """What teardown could not release (each named); `drdrill gc --run-id` is the fix."""
    recovery_figures: tuple[RecoveryFigure, ...] = ()
    """The scenario's recovery figures; the first is the headline (`recovery_figure`)."""
    automated_steps: tuple[ManualStep, ...] = ()
    """What drdrill itself did that a recovery needs (provide the cluster, install Flux):
    listed, timed, and kept out of the manual-step count."""
    interrupted_by: str | None = None
    """SIGINT, SIGTERM or SIGHUP when a signal stopped the drill (the verdict is broken)."""
    output_lost: tuple[str, ...] = ()
    """The drill's output that broke without ending it: a closed console, a listener that
    raised (each makes the verdict broken)."""
    egress: dict[str, Any] = field(default_factory=dict)
    """What the recovery reached and what the drill's egress guard refused (kind): `policy`,
    `reached[]`, `blocked[]` (namespace, pod, owner, host, via, writer), `writers_blocked[]`,
    `mirror` (address, pulled bytes, misses). Empty where no guard runs (embedded)."""
    repo_id: str = ""
    """The repo wherever it is cloned: its remote (`github.com/org/fleet`) or its folder name.
    Trends and fleet pages group runs by it; `repo` is the local path of this run."""

    @property
    def recovery_figure(self) -> RecoveryFigure | None:
        return self.recovery_figures[0] if self.recovery_figures else None

    @property
    def manual_step_count(self) -> int:
        return len(self.manual_steps)

    def phases_in_round(self, round: int) -> tuple[PhaseRecord, ...]:
        return tuple(p for p in self.phases if p.round == round)

    def objects_in_round(self, round: int) -> tuple[ObjectRecord, ...]:
        return tuple(o for o in self.objects if o.round == round)

    @property
    def recovery_manual_steps(self) -> tuple[ManualStep, ...]:
        return tuple(m for m in self.manual_steps if m.round == self.recovery_round)

    @property
    def recovery_manual_time_s(self) -> float:
        return sum(m.duration_s for m in self.recovery_manual_steps)

    @property
    def rto_margin_s(self) -> float | None:
        """RTO target minus time-to-ready: positive is time to spare, negative is over."""
        if self.rto_target_s is None or self.time_to_ready_s is None:
            return None
        return self.rto_target_s - self.time_to_ready_s

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["manual_step_count"] = self.manual_step_count
        data["recovery_manual_step_count"] = len(self.recovery_manual_steps)
        data["automated_step_count"] = len(self.automated_steps)
        fig = self.recovery_figure
        data["recovery_figure"] = None if fig is None else {
            "name": fig.name, "label": fig.label, "value_s": fig.value_s, "met": fig.met}
        return data
