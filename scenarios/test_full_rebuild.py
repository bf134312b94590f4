"""Full rebuild: build the cluster from Git, delete it, rebuild it, and hold the rebuild to
the disaster-recovery expectations."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.drill, pytest.mark.integration]


def test_full_rebuild(run_scenario):
    report = run_scenario("full-rebuild")

    assert report.verdict == "passed", report.error
    rounds = {p.round for p in report.phases if p.name == "converge"}
    assert rounds == {1, 2}, "both the first build and the rebuild must converge"
    rebuilt = [o for o in report.objects if o.round == 2 and o.kind == "Kustomization"]
    assert rebuilt, "the rebuild saw no Kustomization"
    assert all(o.ready and o.revision and o.revision.endswith(report.revision) for o in rebuilt)
    assert report.time_to_ready_s is not None and report.time_to_ready_s > 0
    assert report.critical_path, "a rebuild always has a critical path"
    recovery_steps = [m for m in report.manual_steps if m.round == 2]
    assert len(recovery_steps) >= 1
    fig = report.recovery_figure
    assert fig is not None and fig.name == "time_to_rebuild_s"
    assert fig.value_s == report.time_to_ready_s
    assert {a.id for a in report.automated_steps if a.round == 2} == {
        "provision-cluster", "bootstrap-flux"}
