"""The scenario library without a cluster: registry and CLI listing, and for every scenario the
failing case (its expectation not met gives a *failed* verdict that names what failed)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.cli import main
from harness.core.recorder import Drill
from harness.core.scenario import PHASE_NAMES, Scenario, phases
from harness.drill import DrillOptions, validate_options
from harness.errors import ConfigError, DrillFailure, ExpectationFailed
from harness.scenarios import (
    SCENARIOS,
    bootstrap_twice,
    controller_crash,
    drift,
    git_outage,
    new_hardware,
    node_loss,
    rollback,
)

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class State:
    """The part of the engine's RunState the hooks read."""

    scenario: Scenario
    drill: Drill = field(default_factory=lambda: Drill("unit", clock=Clock()))
    scratch: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    converged: dict[int, Any] = field(default_factory=dict)
    provider_rounds: dict[int, dict[str, Any]] = field(default_factory=dict)
    opts: Any = field(default_factory=lambda: SimpleNamespace(provider="embedded"))

    def option(self, key: str) -> Any:
        return self.scenario.option(self.options, key)


def verdict_of(hook, *args) -> tuple[str, str]:
    """Run an expectation inside a recorded phase, as the engine does; (outcome, error)."""
    d = Drill("verdict", clock=Clock())
    with pytest.raises(DrillFailure), d.phase("verify"):
        hook(*args)
    return d.phases[-1].outcome, d.phases[-1].error or ""


# -- registry --------------------------------------------------------------------------------

def test_every_scenario_is_registered_once_with_phases_hooks_and_a_figure():
    assert set(SCENARIOS) == {"full-rebuild", "new-hardware", "bootstrap-twice", "drift",
                              "rollback", "controller-crash", "git-outage", "node-loss",
                              "secrets-bootstrap"}
    for name, sc in SCENARIOS.items():
        assert sc.name == name and sc.summary and sc.figure and sc.figures is not None
        assert sc.phases[0].name == "preflight" and {p.name for p in sc.phases} <= PHASE_NAMES
        assert sc.phases[-1].name == "verify", f"{name}: verify (rollout) ends every drill"


def test_engine_knows_no_scenario_by_name():
    for module in ("harness/core/engine.py", "harness/drill.py"):
        text = (REPO / module).read_text()
        for name in SCENARIOS:
            if name != "full-rebuild":  # the fallback for a report of an unknown scenario
                assert f'"{name}"' not in text, module


def test_a_scenario_with_a_disaster_phase_needs_the_hook():
    with pytest.raises(ConfigError, match="disaster phase but no disaster hook"):
        Scenario("x", "x", phases(("preflight", "disaster")), figure="f")
    with pytest.raises(ConfigError, match="unknown phases"):
        Scenario("x", "x", phases(("preflight", "explode")), figure="f")


def test_scenarios_list_prints_one_line_each(capsys):
    assert main(["scenarios", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(SCENARIOS)
    assert all(len(line) <= 120 for line in lines)


def test_unknown_scenario_option_is_a_clear_config_error():
    with pytest.raises(ConfigError) as err:
        validate_options(DrillOptions(scenario="git-outage", scenario_options={"outge_s": "5"}))
    assert "outge_s" in str(err.value) and "outage_s" in str(err.value)


# -- the failing case of every scenario --------------------------------------------------------

def test_new_hardware_fails_when_an_object_is_missing_on_the_new_target():
    s = State(SCENARIOS["new-hardware"])
    rev = "main@sha1:abc"
    obj = SimpleNamespace(revision=rev)
    s.converged = {1: SimpleNamespace(objects={"Kustomization/flux-system/apps": obj,
                                               "Kustomization/flux-system/infra": obj}),
                   2: SimpleNamespace(objects={"Kustomization/flux-system/infra": obj})}
    s.provider_rounds = {1: {"api_url": "https://127.0.0.1:1", "nodes": 3},
                         2: {"api_url": "https://127.0.0.1:2", "nodes": 4}}
    outcome, error = verdict_of(new_hardware.expectation, s)
    assert outcome == "failed"
    assert "Kustomization/flux-system/apps: converged on the first target, missing" in error
    s.provider_rounds[2] = s.provider_rounds[1]
    s.converged[2] = s.converged[1]
    _, error = verdict_of(new_hardware.expectation, s)
    assert "same target" in error
    assert new_hardware.other_target(2, {"nodes": 3})["nodes"] == 4


def test_bootstrap_twice_fails_on_a_restarted_pod_or_a_new_revision():
    before = {"Pod/podinfo/podinfo-1 uid": "u1",
              "Kustomization/flux-system/apps lastAppliedRevision": "main@sha1:a",
              "Deployment/podinfo/podinfo generation": "1"}
    after = {"Pod/podinfo/podinfo-2 uid": "u2",
             "Kustomization/flux-system/apps lastAppliedRevision": "main@sha1:b",
             "Deployment/podinfo/podinfo generation": "1"}
    problems = bootstrap_twice.changes(before, after)
    assert "Pod/podinfo/podinfo-1: restarted (gone) after the second bootstrap" in problems
    assert "Pod/podinfo/podinfo-2: new pod after the second bootstrap" in problems
    assert ("Kustomization/flux-system/apps: lastAppliedRevision changed main@sha1:a -> "
            "main@sha1:b") in problems
    assert bootstrap_twice.changes(before, before) == []


def test_drift_reports_unmanaged_objects_as_not_reverted_without_hanging():
    clock = Clock()
    managed = drift.Target("ConfigMap", "echo", "echo-config", "edit")
    unmanaged = drift.Target("ConfigMap", "default", "hand-made", "edit")
    before = {managed.ref: {"a": "1"}, unmanaged.ref: {"a": "1"}}

    def api_state(t):  # Flux restores what it manages; nobody restores the other one
        clock.now += 0.5
        return {"a": "1"} if t is managed and clock.now > 1003 else {"a": "drifted"}

    reverted = drift.watch_reverts(api_state, [managed, unmanaged], before, timeout_s=5,
                                   clock=clock)
    assert reverted[managed.ref] is not None and reverted[unmanaged.ref] is None
    problems = drift.revert_problems(reverted, {managed.ref: "flux-system/apps"}, 5)
    assert problems == ["ConfigMap/default/hand-made is not managed by Flux (in no "
                        "Kustomization's inventory): not reverted"]
    def expectation() -> None:
        raise ExpectationFailed("drift", problems)

    outcome, error = verdict_of(expectation)
    assert outcome == "failed" and "hand-made is not managed by Flux" in error
    with pytest.raises(ConfigError, match="Kind/namespace/name"):
        drift.parse_targets("Secret/x/y")


def test_rollback_finds_and_breaks_a_deployment_and_sees_the_break(tmp_path):
    shutil.copytree(REPO / "apps", tmp_path / "apps")
    path, name, _ = rollback.find_deployment_file(tmp_path, [("podinfo", "podinfo")])
    rollback.break_manifest(path, name)
    assert rollback.BROKEN_LABEL in path.read_text()
    healthy = [{"kind": "Kustomization", "metadata": {"namespace": "flux-system", "name": "apps"},
                "status": {"lastAttemptedRevision": "main@sha1:bad",
                           "conditions": [{"type": "Ready", "status": "True"}]}}]
    assert rollback.broken_signs(healthy, [], "bad") == []  # not broken: detection must fail
    failing = [{**healthy[0], "status": {"lastAttemptedRevision": "main@sha1:bad", "conditions": [
        {"type": "Ready", "status": "False", "reason": "HealthCheckFailed",
         "message": "timeout waiting for: [Deployment/podinfo/podinfo status: 'InProgress']"}]}}]
    signs = rollback.broken_signs(failing, [], "bad")
    assert signs and "HealthCheckFailed" in signs[0]
    with pytest.raises(Exception, match="nothing to break"):
        rollback.find_deployment_file(tmp_path, [("x", "not-there")])


def test_controller_crash_fails_when_the_time_lost_is_over_the_limit_or_unknown():
    s = State(SCENARIOS["controller-crash"], options={"max_time_lost_s": "30"})
    assert controller_crash.time_lost(10.0, 20.0, [5.0, 9.0, 26.0, 30.0], 31.0) == 16.0
    assert controller_crash.time_lost(10.0, 20.0, [5.0], 31.0) == 21.0  # nothing left: converged
    assert controller_crash.mid_converge([{"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}, {}])
    s.drill.phase_starts[("provision", 1)] = 1000.0
    s.scratch.update(killed_at=1010.0, restarted_at=1050.0)
    s.drill.marks[("converged", 1)] = 1090.0
    outcome, error = verdict_of(controller_crash.expectation, s)
    assert outcome == "failed" and "crash cost 80.0s, over the 30s allowed" in error
    s.scratch.pop("restarted_at")
    _, error = verdict_of(controller_crash.expectation, s)
    assert "never restarted" in error


def test_git_outage_fails_when_applied_workloads_stop_during_the_outage():
    s = State(SCENARIOS["git-outage"])
    s.scratch["down_problems"] = ["Deployment podinfo/podinfo: 0 updated / 0 available of 2"]
    outcome, error = verdict_of(git_outage.expectation, s)
    assert outcome == "failed" and "while Git was down: Deployment podinfo/podinfo" in error
    s.scratch.update(down_at=10.0, up_at=30.0, conditions=["Ready=False GitOperationFailed: x"])
    s.drill.marks[("converged", 2)] = 42.5
    fig = git_outage.figures(s)[0]
    assert fig.value_s == 12.5 and fig.items[0].value_s == 20.0


def test_node_loss_fails_while_a_pod_is_still_on_the_lost_node():
    problems = node_loss.off_node_problems(
        [("Deployment", "podinfo/podinfo")], {"podinfo/podinfo-a": "node-1",
                                              "podinfo/podinfo-b": "node-2"},
        {"podinfo/podinfo": "1 updated / 1 available of 2"}, "node-1")
    assert problems == ["Deployment podinfo/podinfo: 1 updated / 1 available of 2",
                        "pod podinfo/podinfo-a still on the lost node node-1"]
    assert node_loss.off_node_problems([("Deployment", "podinfo/podinfo")],
                                       {"podinfo/podinfo-b": "node-2"},
                                       {"podinfo/podinfo": None}, "node-1") == []


def test_every_writer_shows_the_figure_of_a_recovery_without_provision(tmp_path):
    from harness.report.model import DrillReport, FigureItem, ManualStep, PhaseRecord
    from harness.report.model import RecoveryFigure as Fig
    from harness.report.writers import write_all

    phases_ = tuple(PhaseRecord(n, "2026-01-01T00:00:00.000Z", 2.0, "passed", round=r,
                                offset_s=i * 2.0)
                    for i, (r, n) in enumerate([(1, "preflight"), (1, "provision"),
                                                (1, "converge"), (1, "verify"), (1, "disaster"),
                                                (2, "recover"), (2, "converge"), (2, "verify")]))
    report = DrillReport(
        run_id="r", scenario="drift", provider="embedded", repo="/r", revision="abc",
        verdict="failed", started_at="2026-01-01T00:00:00.000Z", time_to_ready_s=6.0,
        rto_target_s=None, phases=phases_, objects=(), manual_steps=(), critical_path=(),
        settings={}, diagnostics={}, error="ExpectationFailed: drift: expectation not met",
        recovery_round=2, recovery_figures=(Fig(
            "time_to_revert_s", "time-to-revert", None, "Drift until restored.",
            items=(FigureItem("edit ConfigMap/default/hand-made", None, "not managed by Flux"),),
            limit_s=60.0, met=False),),
        automated_steps=(ManualStep("provision-cluster", "Provide a cluster", "drdrill",
                                    3.0, True, 1),))
    written = write_all(report, tmp_path)
    md = written["markdown"].read_text()
    assert "**time-to-revert not reached**" in md and "not managed by Flux" in md
    assert "automated by drdrill: `provision-cluster`" in md and "**0** manual steps" in md
    assert "time-to-revert" in written["html"].read_text()
    assert 'name="recovery.time_to_revert_s" value=""' in written["junit"].read_text()


def test_trend_shows_the_recovery_figure_and_still_reads_schema_1(tmp_path):
    import json

    from harness.report.trend import load_history, run_trend

    for i, (version, value) in enumerate([(1, None), (2, 14.5), (2, 15.5)]):
        data = {"schema_version": version, "run_id": f"r{i}", "scenario": "drift",
                "provider": "embedded", "repo": "/r", "cluster": "clusters/x",
                "verdict": "passed", "started_at": f"2026-01-0{i + 1}T00:00:00.000Z",
                "time_to_ready_s": 20.0 + i, "recovery_round": 2, "phases": [],
                "manual_steps": []}
        if version == 2:
            data["recovery_figure"] = {"name": "time_to_revert_s", "label": "time-to-revert",
                                       "value_s": value, "met": True}
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "report.json").write_text(json.dumps(data))
    history = load_history(tmp_path)
    assert len(history.points) == 3 and not history.skipped
    assert [p.figure for p in history.points] == [None, ("time-to-revert", 14.5),
                                                  ("time-to-revert", 15.5)]
    lines: list[str] = []
    assert run_trend(tmp_path, tmp_path / "out", print_out=lines.append) == 0
    table = "\n".join(lines)
    header = next(line for line in table.splitlines() if line.startswith("| Started"))
    assert "| time-to-revert |" in header and "| 15.5s |" in table


def test_secrets_bootstrap_fails_when_a_secret_is_still_ciphertext_or_differs():
    from harness.scenarios import secrets_bootstrap as sb

    plain = {"username": "drill", "password": "s3cr3t-value"}
    ref = "Secret/whoami/whoami-credentials"
    assert sb.decryption_problems(ref, dict(plain), plain) == []
    problems = sb.decryption_problems(
        ref, {"username": "ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]", "password": "q"}, plain)
    assert problems == [f"{ref}: key username still SOPS ciphertext",
                        f"{ref}: key password differs from `sops --decrypt` of the file"]
    assert "s3cr3t-value" not in " ".join(problems)  # values never in messages
    assert sb.decryption_problems(ref, None, plain) == [f"{ref}: not in the cluster"]
    files = sb.sops_files(REPO, "./infrastructure/secrets")
    assert [d["metadata"]["name"] for _, d in files] == ["whoami-credentials"]


@pytest.mark.parametrize(("rto", "ttr", "met"), [(10.0, 42.5, False), (60.0, 42.5, True),
                                                 (10.0, None, False), (None, 42.5, None)])
def test_the_rebuild_figure_carries_the_rto_as_its_limit(rto, ttr, met):
    s = State(SCENARIOS["full-rebuild"], opts=SimpleNamespace(provider="embedded", rto_s=rto))
    s.drill.phase_starts[("provision", 2)] = 0.0
    if ttr is not None:
        s.drill.marks[("converged", 2)] = ttr
    fig = SCENARIOS["full-rebuild"].figures(s)[0]
    assert (fig.value_s, fig.limit_s, fig.met) == (ttr, rto, met)
