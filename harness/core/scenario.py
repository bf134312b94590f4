"""A scenario is data plus hooks on the one engine: its phases, the disaster it inflicts, the
recovery action it takes, its checks and its expectation, and the recovery figures it reports.

The engine (harness.drill) runs `phases` in order and calls the hooks by role; it knows no
scenario by name. A new scenario is one module under harness/scenarios/ that builds a
`Scenario` and is listed once in harness/scenarios/__init__.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ConfigError
from harness.report.model import RecoveryFigure

PHASE_NAMES = frozenset({"preflight", "provision", "bootstrap", "converge", "verify",
                         "disaster", "recover"})
"""What a phase may be called; `disaster` and `recover` run the scenario's hooks."""

Hook = Callable[[Any, int], None]
"""`hook(state, round)`; `state` is the engine's RunState (provider, api, git, drill, ...)."""


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    round: int


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    """One line for `drdrill scenarios list`."""
    phases: tuple[PhaseSpec, ...]
    figure: str
    """Label of the headline recovery figure (e.g. `time-to-revert`)."""
    description: str = ""
    disaster: Hook | None = None
    """Runs in the `disaster` phase."""
    recover: Hook | None = None
    """Runs in the `recover` phase: the recovery action (git revert, Git back online, ...)."""
    verify: Hook | None = None
    """Scenario checks, run in every `verify` phase after the workloads rolled out."""
    expectation: Callable[[Any], None] | None = None
    """Runs at the end of the last `verify`; raises ExpectationFailed when not met."""
    figures: Callable[[Any], Sequence[RecoveryFigure]] | None = None
    """The recovery figures, from the run state; called when the report is built (also after a
    failure, so figures it could not measure are reported as None)."""
    provider_options: Callable[[int, Mapping[str, Any]], Mapping[str, Any]] | None = None
    """Per-round provider options on top of the user's (another target for new-hardware)."""
    flux_overrides: Mapping[str, Any] = field(default_factory=dict)
    """FluxSettings fields this scenario needs (e.g. a short Kustomization interval)."""
    sync_patches: tuple[Mapping[str, Any], ...] = ()
    """Extra patches on the root Kustomization, said in the report as local-run changes."""
    tools: tuple[str, ...] = ()
    """Pinned tools the hooks run (resolved in preflight with the provider's)."""
    local_changes: tuple[str, ...] = ()
    """What this scenario changes to run (said in the report next to the repo's own)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Defaults of the scenario's own knobs; `--scenario-option k=v` overrides them."""

    def __post_init__(self) -> None:
        unknown = sorted({p.name for p in self.phases} - PHASE_NAMES)
        if unknown:
            raise ConfigError(f"scenario {self.name!r} has unknown phases {unknown}",
                              fix=f"use phases from: {', '.join(sorted(PHASE_NAMES))}")
        for role in ("disaster", "recover"):
            if any(p.name == role for p in self.phases) and getattr(self, role) is None:
                raise ConfigError(f"scenario {self.name!r} has a {role} phase but no {role} "
                                  "hook")

    @property
    def last_round(self) -> int:
        return max(p.round for p in self.phases)

    def option(self, given: Mapping[str, Any], key: str) -> Any:
        return given.get(key, self.options.get(key))


def phases(*rounds: Sequence[str]) -> tuple[PhaseSpec, ...]:
    """`phases(["preflight", "provision"], ["converge"])`: round 1, round 2, ..."""
    return tuple(PhaseSpec(name, i) for i, names in enumerate(rounds, 1) for name in names)


BUILD = ("preflight", "provision", "bootstrap", "converge", "verify")
"""The first build every scenario starts with."""

