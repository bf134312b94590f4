from __future__ import annotations

import pytest

from harness.core.recorder import Drill
from harness.errors import NotConverged, ProviderError

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_phases_are_timed_by_one_wrapper_and_ttr_falls_out():
    clock = FakeClock()
    d = Drill("run", clock=clock)
    for name, cost in (("provision", 5.0), ("bootstrap", 2.0), ("converge", 10.0)):
        with d.phase(name, round=2):
            clock.now += cost
    assert [p.duration_s for p in d.phases] == [5.0, 2.0, 10.0]
    # Flux objects Ready is not converged: time-to-ready ends when the workloads rolled out.
    assert d.time_to_ready(round=2) is None
    with d.phase("verify", round=2):
        clock.now += 3.0
        d.mark("converged", round=2)
        clock.now += 1.0  # scenario checks after the rollout are not recovery time
    assert d.time_to_ready(round=2) == 20.0
    assert d.time_to_ready(round=1) is None


def test_round_without_provision_starts_at_its_first_phase_and_automated_steps_are_apart():
    clock = FakeClock()
    d = Drill("run", clock=clock)
    with d.phase("preflight", round=1):
        clock.now += 4.0
    with d.automated_step("provision-cluster", "Provide a cluster"):
        clock.now += 2.0
    d.round = 2
    for name in ("recover", "converge"):
        with d.phase(name, round=2):
            clock.now += 5.0
    d.mark("converged", round=2)
    assert d.round_start(1) is None  # preflight is not recovery
    assert d.time_to_ready(round=2) == 10.0
    assert [a.id for a in d.automated_steps] == ["provision-cluster"] and not d.manual_steps


def test_failed_expectation_is_failed_and_harness_error_is_broken():
    d = Drill("run", clock=FakeClock())
    with pytest.raises(NotConverged), d.phase("converge"):
        raise NotConverged("late", {"Kustomization/x/y": "not ready"})
    with pytest.raises(ProviderError), d.phase("provision"):
        raise ProviderError("no cluster")
    assert [p.outcome for p in d.phases] == ["failed", "broken"]
    assert "Kustomization/x/y" in d.phases[0].error
    assert d.time_to_ready(round=1) is None


def test_manual_step_records_duration_performer_and_round():
    clock = FakeClock()
    d = Drill("run", clock=clock)
    d.round = 2
    with d.manual_step("import-age-key", "Import the SOPS age key", automatable=False) as step:
        step.performed_by = "alice"
        clock.now += 42
    [m] = d.manual_steps
    assert (m.id, m.performed_by, m.duration_s, m.automatable, m.round) == (
        "import-age-key", "alice", 42.0, False, 2)


def test_interrupt_marks_phase_broken():
    d = Drill("run", clock=FakeClock())
    with pytest.raises(KeyboardInterrupt), d.phase("converge"):
        raise KeyboardInterrupt
    assert d.phases[0].outcome == "broken"
    assert "SIGINT" in d.phases[0].error
