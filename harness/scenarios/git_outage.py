"""git-outage: the Git server goes away and comes back after N seconds. What was applied keeps
running; a commit pushed before the outage converges once Git is back; the report says how long
that took and how Flux behaved (the GitRepository's conditions during the outage)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from harness.core.scenario import BUILD, Scenario, phases
from harness.errors import ExpectationFailed
from harness.report.model import FigureItem, RecoveryFigure
from harness.scenarios._common import (
    GIT_GROUP,
    GIT_PLURAL,
    GIT_VERSION,
    SYNC,
    commit_to_served,
    condition,
    custom,
    notify_push,
)
from harness.verify import verify_rollouts

NAME = "git-outage"


def outage(s: Any, rnd: int) -> None:
    """Git goes away right after a new commit landed: Flux learns of it but cannot fetch it."""
    assert s.git is not None
    s.scratch["applied_revision"] = s.rev.sha
    commit_to_served(s, "drdrill git-outage: a commit Flux must fetch after the outage")
    s.scratch["port"] = s.git.pause()
    s.scratch["down_at"] = s.drill.mark("git-down")
    notify_push(s)  # the webhook fires, the fetch fails: Flux sees the outage at once
    s.progress(f"git-outage: Git down on port {s.scratch['port']}; {s.rev.sha[:12]} waits")


def ride_out(s: Any, rnd: int) -> None:
    """For the outage's length: record the GitRepository's conditions and check the workloads
    keep running; then bring Git back on the same URL."""
    seconds = float(s.option("outage_s"))
    seen: list[str] = []
    down_problems: list[str] = []
    deadline = s.scratch["down_at"] + seconds
    while s.drill.clock() < deadline:
        try:
            repo = custom(s).get_namespaced_custom_object(GIT_GROUP, GIT_VERSION, SYNC[0],
                                                          GIT_PLURAL, SYNC[1])
            c = condition(repo)
            text = f"Ready={c.get('status')} {c.get('reason')}: {c.get('message', '')}"[:300]
            if not seen or seen[-1] != text:
                seen.append(text)
        except Exception as exc:  # noqa: BLE001 - an API hiccup is not the outage's fault
            seen.append(f"cannot read the GitRepository: {exc}")
        time.sleep(min(1.0, max(0.0, deadline - s.drill.clock())))
    down_problems = verify_rollouts(s.api, timeout_s=5)
    s.scratch.update(conditions=seen, down_problems=down_problems)
    s.git.resume()
    s.scratch["up_at"] = s.drill.mark("git-up")
    s.progress(f"git-outage: Git back after {seconds:.0f}s; Flux said: {seen[-1] if seen else '?'}")


def expectation(s: Any) -> None:
    problems = [f"while Git was down: {p}" for p in s.scratch.get("down_problems", [])]
    if problems:
        raise ExpectationFailed(NAME, problems)


def figures(s: Any) -> Sequence[RecoveryFigure]:
    up, down = s.scratch.get("up_at"), s.scratch.get("down_at")
    converged = s.drill.marks.get(("converged", 2))
    lost = None if up is None or converged is None else round(converged - up, 3)
    items = [FigureItem("outage", None if up is None or down is None else round(up - down, 3))]
    items += [FigureItem("Flux during the outage", None, c)
              for c in s.scratch.get("conditions", [])]
    return [RecoveryFigure(
        "time_lost_s", "time lost after Git returned", lost,
        "Git back until converged at the commit pushed before the outage (Flux's retry "
        "back-off included).", items=tuple(items))]


SCENARIO = Scenario(
    name=NAME,
    summary="the Git server is down for N s; applied workloads keep running; time lost",
    description="Push a commit, take the Git server down for `outage_s` seconds, record how "
                "Flux behaves and check the applied workloads keep running, bring Git back on "
                "the same URL and measure the time until converged at the new commit.",
    phases=phases((*BUILD, "disaster"), ("recover", "converge", "verify")),
    figure="time lost after Git returned",
    disaster=outage,
    recover=ride_out,
    expectation=expectation,
    figures=figures,
    options={"outage_s": 20},
)
