"""The drill recorder: times phases through one wrapper, records manual steps and objects.

`Drill` knows nothing of clusters; the engine (harness.core.engine) drives it. Time-to-ready
falls out of the phase records: nobody computes it by hand. Phase errors are redacted here, at
the source, so every consumer (console, pytest and Allure steps, report writers) gets them clean.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.errors import DrillFailure, DrillInterrupted, OutputLost
from harness.report.model import ManualStep, Outcome, PhaseRecord
from harness.report.redact import redact


def utcnow_iso(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def outcome_of(exc: BaseException | None) -> Outcome:
    """passed, failed (a DR expectation) or broken (anything else, interrupts included)."""
    if exc is None:
        return "passed"
    return "failed" if isinstance(exc, DrillFailure) else "broken"


def describe_error(exc: BaseException | None) -> str | None:
    """An error as the report shows it, redacted. Errors of harness.errors build their own
    message; anything else is a harness bug and keeps where it came from."""
    if exc is None:
        return None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    if isinstance(exc, DrillInterrupted):
        return str(exc)
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, DrillFailure) and type(exc).__module__ != "harness.errors":
        text = f"{type(exc).__name__}: {text}\n" + "".join(
            traceback.format_tb(exc.__traceback__)[-3:])
    return redact(text)


@dataclass
class _StepHandle:
    performed_by: str


@dataclass
class Drill:
    """Records one drill; the clocks are injectable so tests can drive time."""

    run_id: str
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    phases: list[PhaseRecord] = field(default_factory=list)
    manual_steps: list[ManualStep] = field(default_factory=list)
    round: int = 1
    listeners: list[Callable[[str, PhaseRecord | None], None]] = field(default_factory=list)
    phase_starts: dict[tuple[str, int], float] = field(default_factory=dict)
    """Monotonic start of each (phase, round), for relative times like ready_after_s."""
    automated_steps: list[ManualStep] = field(default_factory=list)
    """What drdrill did itself (provide the cluster, install Flux): not manual steps."""
    marks: dict[tuple[str, int], float] = field(default_factory=dict)
    """Monotonic time of named moments per round; `converged` ends time-to-ready."""
    output_lost: list[OutputLost] = field(default_factory=list)
    """Listeners that raised (each is dropped after its first failure): a broken listener is
    recorded and never ends the drill."""
    on_listener_error: Callable[[OutputLost], None] | None = None
    """Told of each listener failure (the engine turns a closed console off)."""
    current: str | None = None
    """The phase running now (for messages that say where something happened)."""

    def __post_init__(self) -> None:
        self.t0 = self.clock()
        self.started_at = utcnow_iso(self.wall())

    @contextlib.contextmanager
    def phase(self, name: str, *, round: int | None = None) -> Iterator[dict[str, Any]]:
        """Time a phase; its outcome follows the exception (if any) that leaves the block.

        The yielded dict is the phase's `detail`, for numbers worth keeping in the report.
        """
        rnd = self.round if round is None else round
        started = self.clock()
        self.phase_starts[(name, rnd)] = started
        wall = utcnow_iso(self.wall())
        detail: dict[str, Any] = {}
        error: BaseException | None = None
        self.current = f"{name} (round {rnd})" if rnd else name
        try:
            # Inside the try: a signal that lands while a listener prints still leaves a record.
            self._notify(f"start:{name}", None)
            yield detail
        except BaseException as exc:
            error = exc
            raise
        finally:
            record = PhaseRecord(
                name=name, started_at=wall, duration_s=round_s(self.clock() - started),
                outcome=outcome_of(error), error=describe_error(error), round=rnd,
                offset_s=round_s(started - self.t0), detail=detail)
            self.phases.append(record)
            self._notify(f"end:{name}", record)

    def _notify(self, event: str, record: PhaseRecord | None) -> None:
        """Tell every listener; one that raises is recorded, dropped, and the others still run
        (an interrupt, a BaseException, still goes through)."""
        for listener in list(self.listeners):
            try:
                listener(event, record)
            except Exception as exc:  # noqa: BLE001 - output must never end the drill
                with contextlib.suppress(ValueError):
                    self.listeners.remove(listener)
                name = getattr(listener, "__qualname__", type(listener).__name__)
                lost = OutputLost(f"phase listener {name} raised", self.current, exc)
                self.output_lost.append(lost)
                if self.on_listener_error is not None:
                    self.on_listener_error(lost)

    @contextlib.contextmanager
    def manual_step(self, id: str, description: str, *, automatable: bool,
                    performed_by: str = "operator") -> Iterator[_StepHandle]:
        """Record a step a human would do in a real recovery, and how long it took here."""
        handle = _StepHandle(performed_by)
        started = self.clock()
        try:
            yield handle
        finally:
            self.manual_steps.append(ManualStep(id, description, handle.performed_by,
                                                round_s(self.clock() - started), automatable,
                                                self.round))

    @contextlib.contextmanager
    def automated_step(self, id: str, description: str, *,
                       performed_by: str = "drdrill") -> Iterator[_StepHandle]:
        """Record a recovery step drdrill automates (listed, timed, not counted as manual)."""
        handle = _StepHandle(performed_by)
        started = self.clock()
        try:
            yield handle
        finally:
            self.automated_steps.append(ManualStep(id, description, handle.performed_by,
                                                   round_s(self.clock() - started), True,
                                                   self.round))

    def mark(self, name: str, *, round: int | None = None) -> float:
        """Record that `name` happened now in `round` (e.g. `converged`); returns the time."""
        now = self.clock()
        self.marks[(name, self.round if round is None else round)] = now
        return now

    def round_start(self, round: int) -> float | None:
        """When the round's recovery began: its first phase other than preflight."""
        starts = [t for (name, rnd), t in self.phase_starts.items()
                  if rnd == round and name != "preflight"]
        return min(starts) if starts else None

    def record_manual_step(self, id: str, description: str, *, automatable: bool,
                           performed_by: str, duration_s: float) -> None:
        """Record a manual step that did not happen inside a timed block (e.g. one the drill
        makes unnecessary but a real recovery needs)."""
        self.manual_steps.append(ManualStep(id, description, performed_by, duration_s,
                                            automatable, self.round))

    def time_to_ready(self, *, round: int) -> float | None:
        """The round's recovery start until it converged: every Flux object ready at the
        revision *and* every workload rolled out (the `converged` mark verify sets)."""
        start = self.round_start(round)
        end = self.marks.get(("converged", round))
        if start is None or end is None:
            return None
        return round_s(end - start)


def round_s(seconds: float) -> float:
    return round(seconds, 3)
