"""drdrill: disaster-recovery drills for GitOps (Flux) Kubernetes clusters.

The public API is `__all__`; names load lazily so `drdrill tools list` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "ClusterLifecycle": "harness.providers",
    "ClusterProvider": "harness.providers",
    "Config": "harness.config",
    "Drill": "harness.core.recorder",
    "DrillFailure": "harness.errors",
    "DrillOptions": "harness.drill",
    "DrillReport": "harness.report.model",
    "ExpectationFailed": "harness.errors",
    "FluxSettings": "harness.flux",
    "HarnessError": "harness.errors",
    "ProviderContext": "harness.providers",
    "RecoveryFigure": "harness.report.model",
    "SCENARIOS": "harness.scenarios",
    "Scenario": "harness.core.scenario",
    "analyze": "harness.gitops.model",
    "ensure_tools": "harness.tools",
    "run_drill": "harness.drill",
    "write_all": "harness.report.writers",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
