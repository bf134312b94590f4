"""The run's lifetime as one context manager:

    with Run(plan, console=console, drill=drill) as run:
        run.execute()                      # the plan's phases, in order
    run.report, run.exit_code              # always set once the block is left

`__exit__` runs on every way out (success, a failed expectation, an interrupt, a bug in a phase,
a listener or a writer) and does the rest with every further signal ignored: diagnostics, a
first report, teardown (the context stack unwinds), the final report. Its own steps are guarded
one by one, so a `build_report` that raises still leaves teardown done and a report written.

The console must never end the drill either: a write that fails (a `| head` that exited, a CI
log stream that went away) is recorded, the console goes quiet (the closed stream is pointed at
/dev/null so nothing else trips on it), and the report names it with the verdict `broken`.

The engine knows no provider, no Kubernetes and no scenario by name: the plan (harness.drill)
brings the phase actions, the diagnostics and the report.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from harness.core.interrupts import Interrupts
from harness.core.recorder import Drill, describe_error, outcome_of
from harness.core.resources import Resources, Teardown
from harness.core.scenario import PhaseSpec
from harness.errors import DrillInterrupted, OutputLost, ReportError, TeardownIncomplete
from harness.report.model import DrillReport, Verdict
from harness.report.redact import redact, redacting_logs

log = logging.getLogger(__name__)

_PIPE_GONE = frozenset({errno.EPIPE, errno.EIO, errno.EBADF, errno.ECONNRESET})


@dataclass(frozen=True)
class Ending:
    """How the run ended, as the report states it."""

    verdict: Verdict
    error: BaseException | None
    teardown: Teardown | None = None
    signal: str | None = None
    """The signal that stopped the drill (SIGINT, SIGTERM, SIGHUP), if one did."""
    output_lost: tuple[OutputLost, ...] = ()


class Plan(Protocol):
    """What a drill brings to the engine: its phases and how to act, collect and report."""

    run_id: str
    report_dir: Path
    resources: Resources

    @property
    def phases(self) -> Sequence[PhaseSpec]: ...

    def start(self) -> None:
        """Check the options and own the run folder (an error here is reported too)."""

    def act(self, name: str, rnd: int) -> None:
        """Run one phase's action."""

    def collect(self, rnd: int) -> None:
        """Diagnostics of the live cluster, before teardown; best effort, never raises."""

    def halt(self) -> None:
        """Stop the external programs running now, in any thread (called from the signal
        handler at the first interrupt: quick, never blocks)."""

    def keep(self, verdict: Verdict) -> bool:
        """Whether the cluster is kept (`--keep-cluster`) given the verdict."""

    def kept(self) -> None:
        """Mark the kept cluster and tell the user how to reach and remove it."""

    def build_report(self, ending: Ending) -> DrillReport:
        """The report of the run so far."""

    def bare_report(self, ending: Ending) -> DrillReport:
        """A report from the engine's own records only (when build_report has a bug)."""

    def write(self, report: DrillReport) -> None:
        """Write every format; ReportError names what could not be written."""


class Console:
    """The drill's voice: every line redacted, and a write that fails never ends the drill.

    The first failure is recorded (`lost`), and the console goes quiet from then on."""

    def __init__(self, write: Callable[[str], None] | None = None,
                 where: Callable[[], str | None] = lambda: None) -> None:
        self._write = write or (lambda line: log.info("%s", line))
        self.where = where
        self.lost: OutputLost | None = None
        self.tty = bool(getattr(write, "tty", False))

    def __call__(self, line: str) -> None:
        if self.lost is not None:
            log.debug("console closed; not shown: %s", line)
            return
        try:
            self._write(redact(line))
        except Exception as exc:  # noqa: BLE001 - output must never end the drill
            self.lose(exc)

    def lose(self, exc: BaseException, what: str | None = None) -> None:
        """Record a failed write; a closed pipe also turns the closed std streams off."""
        gone = _pipe_gone(exc)
        if gone:
            silence_closed_streams()
        if self.lost is None:
            self.lost = OutputLost(what or ("the console closed" if gone else
                                            "writing to the console failed"),
                                   self.where(), exc)

    def listener_failed(self, lost: OutputLost) -> None:
        """A phase listener raised: if it was writing to a closed pipe, the console is gone."""
        if _pipe_gone(lost.exc):
            self.lose(lost.exc)


def _pipe_gone(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _PIPE_GONE


def silence_closed_streams() -> None:
    """Point stdout/stderr at /dev/null when their reader has gone (POLLERR on a pipe's write
    end): later writes (log records, the summary, the interpreter's flush at exit) then go
    nowhere instead of raising BrokenPipeError somewhere that cannot handle it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            events = poller.poll(0)
        except (OSError, ValueError, AttributeError):
            continue
        if any(ev & (select.POLLERR | select.POLLHUP) for _, ev in events):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, fd)
            finally:
                os.close(devnull)


@dataclass
class Run:
    """One drill's lifetime; see the module docstring."""

    plan: Plan
    drill: Drill
    console: Console = field(default_factory=Console)
    report: DrillReport | None = None
    report_error: ReportError | None = None
    """Set when report.json itself could not be written (then `report` is what was meant)."""
    signals: Interrupts = field(init=False)
    _logs: contextlib.ExitStack = field(init=False, default_factory=contextlib.ExitStack)
    _stopped_by: str | None = field(init=False, default=None)
    """The signal whose interrupt ended the phases (SIGINT for a bare KeyboardInterrupt)."""

    def __post_init__(self) -> None:
        self.signals = Interrupts(self.console, on_first=self.plan.halt)
        self.console.where = lambda: self.drill.current
        self.drill.on_listener_error = self.console.listener_failed

    def __enter__(self) -> Run:
        self._logs.enter_context(redacting_logs())
        self._logs.enter_context(self.signals)
        return self

    def execute(self) -> None:
        """The plan's phases in order; an interrupt some library swallowed still ends the drill
        at the next phase boundary."""
        self.plan.start()
        for spec in self.plan.phases:
            self.drill.round = spec.round
            with self.drill.phase(spec.name, round=spec.round):
                self.signals.check()
                self.plan.act(spec.name, spec.round)
                self.signals.check()

    def __exit__(self, et: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self.signals.ignore()  # from here to the end: report and teardown must finish
        try:
            if error is None and self.signals.first is not None:
                error = DrillInterrupted(self.signals.first)  # swallowed on its way up
            if error is not None:
                self.console(f"drill stopped: {describe_error(error)}")
            self._finish(error)
        finally:
            self._logs.close()  # handlers back: a signal now acts as it would without us
        # Recorded in the report; anything else (SystemExit, GeneratorExit) goes on up.
        return error is None or isinstance(error, (Exception, DrillInterrupted,
                                                   KeyboardInterrupt))

    # -- the end of the run ----------------------------------------------------------------

    @property
    def interrupted_by(self) -> str | None:
        """The signal that stopped the drill (not one that arrived during teardown)."""
        return self._stopped_by

    @property
    def exit_code(self) -> int:
        """0 passed, 1 failed, 2 broken; 128 + the signal's number when one stopped it."""
        if self._stopped_by is not None:
            return DrillInterrupted(self._stopped_by).exit_code
        if self.report is None or self.report_error is not None:
            return 2
        return {"passed": 0, "failed": 1}.get(self.report.verdict, 2)

    def _ending(self, verdict: Verdict, error: BaseException | None,
                teardown: Teardown | None = None) -> Ending:
        # A listener that was writing to the closed console is the console closing: said once.
        lost = ([self.console.lost] if self.console.lost is not None else []) + [
            x for x in self.drill.output_lost
            if self.console.lost is None or not _pipe_gone(x.exc)]
        if lost and verdict == "passed":
            verdict, error = "broken", lost[0]
        return Ending(verdict, error, teardown, self._stopped_by, tuple(lost))

    def _report(self, ending: Ending) -> DrillReport:
        try:
            return self.plan.build_report(ending)
        except Exception as exc:  # a bug here must not cost the report
            log.debug("build_report failed", exc_info=True)
            self.console(f"building the report failed: {describe_error(exc)}")
            bug = ReportError(f"building the report failed: {type(exc).__name__}: {exc}",
                              fix="a drdrill bug: report it with this report.json")
            bare = Ending("broken", ending.error or bug, ending.teardown, ending.signal,
                          ending.output_lost)
            return self.plan.bare_report(bare)

    def _finish(self, error: BaseException | None) -> None:
        """Diagnostics, a first report, teardown, the final report; each step guarded."""
        if isinstance(error, DrillInterrupted):
            self._stopped_by = error.signal_name
        elif isinstance(error, KeyboardInterrupt):
            self._stopped_by = "SIGINT"
        verdict: Verdict = "passed" if error is None else (
            "failed" if outcome_of(error) == "failed" else "broken")
        keep = False
        with contextlib.suppress(Exception):
            keep = self.plan.keep(verdict)
        with contextlib.suppress(Exception), self.drill.phase("report", round=0):
            self.plan.collect(self.drill.round)
            # Written before teardown: a kill -9 during teardown still leaves this report.
            self.plan.write(self._report(self._ending(verdict, error)))
        if self.drill.phases[-1].outcome != "passed":
            verdict = "broken"
            error = error or ReportError(self.drill.phases[-1].error or "report phase failed")
        done = Teardown()
        with contextlib.suppress(Exception), self.drill.phase("teardown", round=0):
            done = self.plan.resources.close(keep=keep)
            if keep:
                self.plan.kept()
            if not done.complete:
                raise TeardownIncomplete(self.plan.run_id, done.failures, done.leftovers)
        if not done.complete:
            verdict = "broken"
            error = error or TeardownIncomplete(self.plan.run_id, done.failures, done.leftovers)
            self.console(f"teardown incomplete: {'; '.join(done.failures + done.leftovers)}; "
                         f"fix: drdrill gc --run-id {self.plan.run_id}")
        self.report = self._report(self._ending(verdict, error, done))
        try:
            self.plan.write(self.report)
        except ReportError as exc:
            self.console(f"the report could not be written completely: {exc}")
            if "json" not in exc.written:
                self.report_error = exc
