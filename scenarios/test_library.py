"""The scenario library on the embedded default: each drill must pass and write its recovery
figure. (full-rebuild has its own module; the failing cases are unit tests in
tests/unit/test_scenarios.py, cheap because they need no cluster.)"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.drill, pytest.mark.integration]


def figure(report, name):
    found = {f.name: f for f in report.recovery_figures}
    assert name in found, f"no {name} figure in {sorted(found)}"
    return found[name]


def passed(report):
    assert report.verdict == "passed", report.error
    assert report.schema_version >= 2
    assert report.time_to_ready_s is not None and report.time_to_ready_s > 0
    return report


def test_new_hardware(run_scenario):
    report = passed(run_scenario("new-hardware"))
    fig = figure(report, "time_to_ready_new_target_s")
    assert fig.value_s == report.time_to_ready_s
    first, second = (report.settings["provider_rounds"][f"round{r}"] for r in (1, 2))
    assert first["nodes"] != second["nodes"] and first["api_url"] != second["api_url"]
    assert {i.ref.split(":")[0] for i in fig.items} == {"first target", "new target"}


def test_bootstrap_twice(run_scenario):
    report = passed(run_scenario("bootstrap-twice"))
    fig = figure(report, "second_bootstrap_s")
    assert fig.met and fig.value_s is not None and fig.limit_s is not None
    assert [p.name for p in report.phases if p.round == 2] == ["bootstrap", "converge", "verify"]


def test_drift(run_scenario):
    report = passed(run_scenario("drift"))
    fig = figure(report, "time_to_revert_s")
    assert fig.value_s is not None and fig.met
    assert {i.ref.split()[0] for i in fig.items} == {"scale", "edit", "delete"}
    assert all(i.value_s is not None for i in fig.items)


def test_rollback(run_scenario):
    report = passed(run_scenario("rollback"))
    rollback, detect = figure(report, "time_to_rollback_s"), figure(report, "time_to_detect_s")
    assert rollback.value_s == report.time_to_ready_s and detect.value_s is not None
    # the drill converged at the revert, not at the commit it started from
    ks = [o for o in report.objects_in_round(2) if o.kind == "Kustomization"]
    assert ks and all(o.revision.endswith(report.revision) for o in ks)


def test_controller_crash(run_scenario):
    report = passed(run_scenario("controller-crash"))
    lost = figure(report, "time_lost_s")
    assert lost.value_s is not None and lost.met
    down = next(i for i in lost.items if i.ref == "controller down")
    assert down.value_s is not None and down.value_s >= 10  # the kubelet-like back-off


def test_git_outage(run_scenario):
    report = passed(run_scenario("git-outage", scenario_options={"outage_s": 10}))
    lost = figure(report, "time_lost_s")
    assert lost.value_s is not None
    outage = next(i for i in lost.items if i.ref == "outage")
    assert outage.value_s is not None and outage.value_s >= 10
    assert any(i.ref == "Flux during the outage" for i in lost.items)


def test_node_loss(run_scenario):
    report = passed(run_scenario("node-loss"))
    fig = figure(report, "time_to_reschedule_s")
    assert fig.value_s is not None and fig.items


def test_secrets_bootstrap(run_scenario):
    report = passed(run_scenario("secrets-bootstrap"))
    fig = figure(report, "time_to_ready_with_key_s")
    assert any(i.ref == "decrypted Secret/whoami/whoami-credentials" for i in fig.items)
    assert any(m.id == "secret/flux-system/sops-age" for m in report.manual_steps)


def test_secrets_bootstrap_without_the_key_stops_in_preflight(run_scenario, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(REPO / "scenarios" / "inputs" / "homelab" / "cluster-secrets.yaml", inputs)
    started = time.monotonic()
    report = run_scenario("secrets-bootstrap", inputs=inputs)
    assert time.monotonic() - started < 60
    assert report.verdict == "broken"  # an input is missing: the drill could not be run
    assert [p.name for p in report.phases if p.outcome == "broken"] == ["preflight"]
    assert "Secret flux-system/sops-age (the SOPS decryption key" in report.error
    assert "Kustomization/flux-system/secrets" in report.error
    assert not any(p.name == "provision" for p in report.phases)
