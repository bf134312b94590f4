"""controller-crash: a Flux controller dies mid-converge and is restarted as a kubelet would,
after a back-off; convergence must still complete, and the figure is the time lost."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from harness.core.scenario import Scenario, phases
from harness.errors import ConfigError, ExpectationFailed, HarnessError
from harness.report.model import RecoveryFigure
from harness.scenarios._common import (
    condition,
    figure_item,
    kustomizations,
    poll,
    since_round_start,
)

NAME = "controller-crash"
CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller")


def mid_converge(items: Sequence[dict[str, Any]]) -> bool:
    """Some Kustomization is Ready and some is not (or not there yet): Flux is mid-way."""
    ready = [condition(k).get("status") == "True" for k in items]
    return any(ready) and (not all(ready) or len(items) < 2)


def crash(s: Any, rnd: int) -> None:
    """Wait until Flux is mid-converge, then kill the controller (SIGKILL); a background thread
    restarts it after the back-off, while the converge phase watches."""
    name = str(s.option("controller"))
    if name not in CONTROLLERS:
        raise ConfigError(f"controller-crash: unknown controller {name!r}",
                          fix=f"--scenario-option controller=one of {', '.join(CONTROLLERS)}")
    restart = getattr(s.provider, "restart_component", None)
    if restart is None:
        raise HarnessError(f"provider {s.opts.provider!r} cannot restart a Flux controller",
                           fix="run controller-crash on the embedded provider")
    hit, _ = poll(lambda: (mid_converge(kustomizations(s)), ""),
                  timeout_s=float(s.option("wait_for_mid_converge_s")), interval_s=0.1)
    s.scratch["mid_converge"] = hit
    back_off = float(s.option("back_off_s"))
    s.scratch["killed_at"] = s.drill.clock()
    s.progress(f"controller-crash: killing {name}"
               + ("" if hit else " (Flux was not mid-converge within the wait)")
               + f"; restart after {back_off:.0f}s back-off")
    errors: list[BaseException] = []

    def restart_later() -> None:
        try:
            restart(name, down_s=back_off, crash=True)
            s.scratch["restarted_at"] = s.drill.clock()
        except BaseException as exc:  # noqa: BLE001 - handed to the recover phase
            errors.append(exc)

    thread = threading.Thread(target=restart_later, name="controller-restart", daemon=True)
    s.scratch.update(restart_thread=thread, restart_errors=errors)
    thread.start()
    # The kill itself happens at once in the thread (stop without grace); wait for it only.
    poll(lambda: (name not in {c.name for c in s.provider.supervisor.children}
                  or "restarted_at" in s.scratch, ""), timeout_s=10, interval_s=0.02)


def time_lost(killed: float | None, restarted: float | None,
              ready_times: Sequence[float], converged: float | None) -> float | None:
    """Kill until convergence moved again: the first object ready after the restart (or the
    convergence itself, when nothing was left for the dead controller)."""
    if killed is None or restarted is None:
        return None
    after = [t for t in ready_times if t >= restarted]
    resumed = min(after) if after else converged
    return None if resumed is None else max(0.0, resumed - killed)


def measured(s: Any) -> dict[str, float | None]:
    rnd = 1
    killed = since_round_start(s, rnd, s.scratch.get("killed_at"))
    restarted = since_round_start(s, rnd, s.scratch.get("restarted_at"))
    result = s.converged.get(rnd)
    ready = [t.ready_after_s for t in result.objects.values()
             if t.ready_after_s is not None] if result else []
    converged = since_round_start(s, rnd, s.drill.marks.get(("converged", rnd)))
    lost = time_lost(killed, restarted, ready, converged)
    return {"killed": killed, "restarted": restarted,
            "lost": None if lost is None else round(lost, 3),
            "down": None if killed is None or restarted is None else restarted - killed}


def expectation(s: Any) -> None:
    thread = s.scratch.get("restart_thread")
    if thread is not None:
        thread.join(timeout=60)
    for exc in s.scratch.get("restart_errors", []):
        raise HarnessError(f"restarting {s.option('controller')} failed: {exc}") from exc
    lost = measured(s)["lost"]
    limit = float(s.option("max_time_lost_s"))
    if lost is None:
        raise ExpectationFailed(NAME, ["the controller was never restarted: time lost unknown"])
    if lost > limit:
        raise ExpectationFailed(NAME, [f"{s.option('controller')} crash cost {lost:.1f}s, over "
                                       f"the {limit:.0f}s allowed (max_time_lost_s)"])


def figures(s: Any) -> Sequence[RecoveryFigure]:
    m = measured(s)
    limit = float(s.option("max_time_lost_s"))
    return [
        RecoveryFigure(
            "time_lost_s", "time lost", m["lost"],
            f"{s.option('controller')} killed mid-converge until convergence moved again after "
            "its restart (back-off included).", limit_s=limit,
            met=None if m["lost"] is None else m["lost"] <= limit,
            items=(figure_item("killed at (s into the round)", m["killed"]),
                   figure_item("restarted at (s into the round)", m["restarted"]),
                   figure_item("controller down", m["down"],
                              f"back-off {s.option('back_off_s')}s, as a kubelet's first "
                              "CrashLoopBackOff"))),
        RecoveryFigure("time_to_ready_s", "time-to-ready with the crash",
                       s.drill.time_to_ready(round=1),
                       "Provision until converged, the crash and restart included."),
    ]


SCENARIO = Scenario(
    name=NAME,
    summary="kill a Flux controller mid-converge, restart it with back-off; the time lost",
    description="Once Flux is mid-converge, SIGKILL one controller (default "
                "kustomize-controller) and restart it after a kubelet-like back-off; "
                "convergence must complete, and the time lost is measured.",
    phases=phases(("preflight", "provision", "bootstrap", "disaster", "converge", "verify")),
    figure="time lost",
    disaster=crash,
    expectation=expectation,
    figures=figures,
    options={"controller": "kustomize-controller", "back_off_s": 10,
             "wait_for_mid_converge_s": 120, "max_time_lost_s": 120},
)
