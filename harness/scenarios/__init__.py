"""The scenario library: one module per scenario, registered here and nowhere else."""

from __future__ import annotations

from harness.core.scenario import Scenario
from harness.scenarios import (
    bootstrap_twice,
    controller_crash,
    drift,
    full_rebuild,
    git_outage,
    new_hardware,
    node_loss,
    rollback,
    secrets_bootstrap,
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    full_rebuild.SCENARIO,
    new_hardware.SCENARIO,
    bootstrap_twice.SCENARIO,
    drift.SCENARIO,
    rollback.SCENARIO,
    controller_crash.SCENARIO,
    git_outage.SCENARIO,
    node_loss.SCENARIO,
    secrets_bootstrap.SCENARIO,
)}
