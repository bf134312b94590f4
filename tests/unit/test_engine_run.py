"""The run's lifetime (harness.core.engine.Run) with a plan of plain Python: every way out of the
phases ends in teardown and a written report, and output that breaks never ends the drill."""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.core.engine import Console, Ending, Run
from harness.core.recorder import Drill
from harness.core.resources import Resources
from harness.core.scenario import PhaseSpec, phases
from harness.errors import DrillInterrupted, ReportError, RolloutFailed
from harness.report.model import DrillReport, Verdict

pytestmark = pytest.mark.unit


@dataclass
class FakePlan:
    """Phases that do what the test says; teardown and reports recorded in `log`."""

    report_dir: Path
    run_id: str = "r-test"
    resources: Resources = field(default_factory=Resources)
    actions: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    written: list[DrillReport] = field(default_factory=list)
    report_bug: bool = False
    write_fails: bool = False

    @property
    def phases(self) -> tuple[PhaseSpec, ...]:
        return phases(("preflight", "provision", "converge"))

    def start(self) -> None:
        self.resources.push("cluster", lambda: self.log.append("teardown"))

    def act(self, name: str, rnd: int) -> None:
        self.log.append(name)
        action = self.actions.get(name)
        if action is not None:
            action()

    def collect(self, rnd: int) -> None:
        self.log.append("collect")

    def halt(self) -> None:
        self.log.append("halt")

    def keep(self, verdict: Verdict) -> bool:
        return False

    def kept(self) -> None:
        raise AssertionError("not kept")

    def build_report(self, ending: Ending) -> DrillReport:
        if self.report_bug:
            raise RuntimeError("injected build_report bug")
        return self.bare_report(ending)

    def bare_report(self, ending: Ending) -> DrillReport:
        from harness.core.recorder import describe_error

        return DrillReport(
            run_id=self.run_id, scenario="s", provider="p", repo="r", revision="",
            verdict=ending.verdict, started_at="", time_to_ready_s=None, rto_target_s=None,
            phases=(), objects=(), manual_steps=(), critical_path=(), settings={},
            diagnostics={}, error=describe_error(ending.error), interrupted_by=ending.signal,
            output_lost=tuple(str(x) for x in ending.output_lost))

    def write(self, report: DrillReport) -> None:
        if self.write_fails:
            err = ReportError("disk full")
            raise err
        self.written.append(report)


def _run(plan: FakePlan, console: Console | None = None, drill: Drill | None = None) -> Run:
    with Run(plan, drill or Drill(plan.run_id), console or Console(lambda line: None)) as run:
        run.execute()
    return run


def test_a_drill_that_passes_reports_twice_and_tears_down(tmp_path):
    plan = FakePlan(tmp_path)
    run = _run(plan)
    assert plan.log == ["preflight", "provision", "converge", "collect", "teardown"]
    assert run.report is not None and run.report.verdict == "passed" and run.exit_code == 0
    assert len(plan.written) == 2


def test_a_failed_expectation_is_failed_and_exits_1(tmp_path):
    def fail() -> None:
        raise RolloutFailed("web not rolled out")

    plan = FakePlan(tmp_path, actions={"converge": fail})
    run = _run(plan)
    assert run.report is not None and run.report.verdict == "failed" and run.exit_code == 1
    assert plan.log[-1] == "teardown"


def test_a_bug_in_a_phase_is_broken_and_still_tears_down(tmp_path):
    plan = FakePlan(tmp_path, actions={"provision": lambda: {}["x"]})
    run = _run(plan)
    assert run.report is not None and run.report.verdict == "broken" and run.exit_code == 2
    assert "KeyError" in (run.report.error or "") and plan.log[-1] == "teardown"


def test_build_report_that_raises_still_tears_down_and_writes_a_report(tmp_path):
    plan = FakePlan(tmp_path, report_bug=True)
    said: list[str] = []
    run = _run(plan, Console(said.append))
    assert plan.log[-1] == "teardown"
    assert run.report is not None and run.report.verdict == "broken"
    assert "injected build_report bug" in (run.report.error or "")
    assert any("building the report failed" in line for line in said)
    assert plan.written and plan.written[-1] is run.report


def test_report_json_that_cannot_be_written_is_said_and_exits_2(tmp_path):
    plan = FakePlan(tmp_path, write_fails=True)
    run = _run(plan)
    assert plan.log[-1] == "teardown"
    assert run.report_error is not None and run.exit_code == 2


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                           (signal.SIGHUP, 129)])
def test_an_interrupt_tears_down_reports_broken_and_exits_128_plus_the_signal(tmp_path, sig,
                                                                              code):
    def interrupt() -> None:
        os.kill(os.getpid(), sig)
        signal.sigtimedwait([], 0.5)

    plan = FakePlan(tmp_path, actions={"provision": interrupt})
    run = _run(plan)
    assert plan.log == ["preflight", "provision", "halt", "collect", "teardown"]
    assert run.report is not None and run.report.verdict == "broken"
    assert run.report.interrupted_by == sig.name and f"interrupted by {sig.name}" in (
        run.report.error or "")
    assert run.exit_code == code and run.interrupted_by == sig.name


def test_an_interrupt_some_library_swallowed_still_ends_the_drill(tmp_path):
    def swallow() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)
        except BaseException:  # the library under suspicion swallows everything
            pass

    plan = FakePlan(tmp_path, actions={"provision": swallow})
    run = _run(plan)
    assert "converge" not in plan.log and run.exit_code == 143


def test_a_second_signal_while_the_first_is_reported_is_ignored(tmp_path):
    drill = Drill("r-test")

    def print_then_interrupt_again(event: str, record: object) -> None:
        if event == "end:provision":  # the first interrupt is on its way up, being printed
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0.5)

    drill.listeners.append(print_then_interrupt_again)

    def interrupt() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.5)

    said: list[str] = []
    plan = FakePlan(tmp_path, actions={"provision": interrupt})
    run = _run(plan, Console(said.append), drill)
    assert plan.log[-1] == "teardown" and run.exit_code == 143
    assert any("SIGINT ignored: the drill is stopping (SIGTERM)" in line for line in said)


def test_a_listener_that_raises_is_recorded_and_the_drill_goes_on(tmp_path):
    drill = Drill("r-test")

    def broken(event: str, record: object) -> None:
        raise ValueError("listener bug")

    drill.listeners.append(broken)
    plan = FakePlan(tmp_path)
    run = _run(plan, drill=drill)
    assert plan.log == ["preflight", "provision", "converge", "collect", "teardown"]
    assert run.report is not None and run.report.verdict == "broken" and run.exit_code == 2
    assert "listener" in (run.report.error or "") and "listener bug" in run.report.output_lost[0]


def test_a_closed_console_is_recorded_goes_quiet_and_the_drill_goes_on(tmp_path):
    writes: list[str] = []

    def closed_pipe(line: str) -> None:
        writes.append(line)
        if len(writes) >= 2:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    plan = FakePlan(tmp_path, actions={"provision": lambda: run_console("provisioning")})
    console = Console(closed_pipe)

    def run_console(line: str) -> None:
        console(line)
        console(line)
        console(line)

    run = _run(plan, console)
    assert len(writes) == 2  # quiet after the pipe closed
    assert plan.log == ["preflight", "provision", "converge", "collect", "teardown"]
    assert run.report is not None and run.report.verdict == "broken"
    assert "the console closed during provision (round 1)" in (run.report.error or "")
    assert run.exit_code == 2


def test_a_real_failure_stays_the_error_when_the_console_also_closed(tmp_path):
    def fail() -> None:
        raise RolloutFailed("web not rolled out")

    def closed(line: str) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    plan = FakePlan(tmp_path, actions={"converge": fail})
    console = Console(closed)
    run = _run(plan, console)
    console("x")
    assert run.report is not None and run.report.verdict == "failed"
    assert "web not rolled out" in (run.report.error or "")


def test_an_interrupt_during_a_listener_print_is_still_an_interrupt(tmp_path):
    drill = Drill("r-test")

    def interrupted_print(event: str, record: object) -> None:
        if event == "start:converge":
            raise DrillInterrupted("SIGHUP")

    drill.listeners.append(interrupted_print)
    plan = FakePlan(tmp_path)
    run = _run(plan, drill=drill)
    assert run.exit_code == 129 and plan.log[-1] == "teardown"
    assert not run.report or not run.report.output_lost


def test_the_report_marks_inputs_given_with_inputs_as_supplied():
    from types import SimpleNamespace

    from harness.drill import _inputs
    from harness.gitops.inputs import ManualInput, SuppliedInputs

    given = ManualInput("Secret", "apps", "db", ("Kustomization/flux-system/apps",), "x", False)
    other = ManualInput("Secret", "apps", "api", ("Kustomization/flux-system/apps",), "x", False)
    doc = {"kind": "Secret", "metadata": {"name": "db", "namespace": "apps"}}
    s = SimpleNamespace(model=SimpleNamespace(manual_inputs=[given, other]),
                        supplied=SuppliedInputs((doc,), ("in/db.yaml",)))
    assert [i["status"] for i in _inputs(s)] == ["supplied", "missing"]  # type: ignore[arg-type]


def test_preflight_and_the_drill_pick_the_default_cluster_by_one_rule(tmp_path):
    """A FluxInstance repo without clusters/: preflight found its cluster, the drill did not."""
    from harness import drill
    from harness.gitops import preflight

    assert drill.default_cluster is preflight.default_cluster
    (tmp_path / "fleet" / "prod").mkdir(parents=True)
    (tmp_path / "fleet" / "prod" / "instance.yaml").write_text(
        "apiVersion: fluxcd.controlplane.io/v1\nkind: FluxInstance\n"
        "metadata: {name: flux, namespace: flux-system}\n"
        "spec:\n  sync: {kind: GitRepository, url: 'https://example.com/x.git', "
        "path: fleet/prod}\n")
    assert drill.default_cluster(tmp_path) == "fleet/prod"
