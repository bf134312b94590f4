"""new-hardware: the target is gone for good; recover onto a different one (embedded: a new
cluster with other ports, folders and node count; lab: a host of the spare pool) and check
that the same objects converge at the same revision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.core.scenario import BUILD, Scenario, phases
from harness.errors import ExpectationFailed
from harness.report.model import FigureItem, RecoveryFigure
from harness.scenarios._common import lose_cluster

NAME = "new-hardware"


def other_target(rnd: int, given: Mapping[str, Any]) -> Mapping[str, Any]:
    """Round 2 runs on other hardware: a spare lab host, or another embedded node count."""
    if rnd < 2:
        return {}
    out: dict[str, Any] = {"recover_to": "spare"}
    nodes = int(given.get("nodes", 3))
    out["nodes"] = nodes + 1 if nodes < 5 else nodes - 1
    return out


def objects_by_round(s: Any, rnd: int) -> dict[str, str | None]:
    result = s.converged.get(rnd)
    if result is None:
        return {}
    return {ref: t.revision for ref, t in result.objects.items()}


def same_objects_problems(first: Mapping[str, str | None],
                          second: Mapping[str, str | None]) -> list[str]:
    """What differs between the objects of the first build and of the recovery."""
    problems = [f"{ref}: converged on the first target, missing on the new one"
                for ref in sorted(set(first) - set(second))]
    problems += [f"{ref}: on the new target only" for ref in sorted(set(second) - set(first))]
    problems += [f"{ref}: revision {first[ref]} first, {second[ref]} on the new target"
                 for ref in sorted(set(first) & set(second)) if first[ref] != second[ref]]
    return problems


def targets(s: Any) -> tuple[str, str]:
    def name(rnd: int) -> str:
        d = s.provider_rounds.get(rnd) or {}
        host = d.get("host") or d.get("api_url") or d.get("workdir") or "?"
        nodes = d.get("nodes") or d.get("node_count")
        return f"{s.opts.provider} {host}" + (f" ({nodes} nodes)" if nodes else "")

    return name(1), name(2)


def expectation(s: Any) -> None:
    problems = same_objects_problems(objects_by_round(s, 1), objects_by_round(s, 2))
    first, second = targets(s)
    if first == second:
        problems.append(f"the recovery ran on the same target as the first build ({first})")
    if problems:
        raise ExpectationFailed(NAME, problems)


def figures(s: Any) -> Sequence[RecoveryFigure]:
    first, second = targets(s)
    return [RecoveryFigure(
        "time_to_ready_new_target_s", "time-to-ready on new hardware",
        s.drill.time_to_ready(round=2),
        "Provision of the new target until converged there (objects ready, workloads rolled "
        "out).", items=(FigureItem(f"first target: {first}", s.drill.time_to_ready(round=1)),
                        FigureItem(f"new target: {second}", s.drill.time_to_ready(round=2))))]


SCENARIO = Scenario(
    name=NAME,
    summary="lose the target for good, recover onto other hardware; same objects, same revision",
    description="Build on one target, lose it, recover onto a different one (new ports, folders "
                "and node count; a spare lab host), and check the same Flux objects converge at "
                "the same revision.",
    phases=phases((*BUILD, "disaster"), ("provision", "bootstrap", "converge", "verify")),
    figure="time-to-ready on new hardware",
    disaster=lose_cluster,
    expectation=expectation,
    figures=figures,
    provider_options=other_target,
)
