"""The benchmark's arithmetic: percentiles, the Flux critical-path floor, and whether a waiter
said "ready" before every object was (pure functions, no I/O; readiness itself is
harness.bench.judge's)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50, p95 and max of `values` (seconds), None where there are no values."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": max(values)}


SAME_EVENT_S = 0.25
"""Two watchers get the same event a few milliseconds apart, in either order: a waiter that
returns up to this long before the independent watcher's copy of the event saw that event."""


def too_early(ready_at: Mapping[str, float | None], returned_at: float, *,
              tolerance_s: float = SAME_EVENT_S) -> list[str]:
    """Objects that were not yet ready at `returned_at`: the waiter called them ready too early
    (never-ready objects and ones created after it returned count too)."""
    return sorted(ref for ref, t in ready_at.items()
                  if t is None or t > returned_at + tolerance_s)


def speedup(drills: int, one_s: float, together_s: float) -> float:
    """How many times faster `drills` drills ran together than one after another."""
    return drills * one_s / together_s if together_s > 0 else float("nan")


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b
