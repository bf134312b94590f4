"""The benchmark's arithmetic: percentiles, the Flux critical-path floor, and whether a waiter
said "ready" before every object was (pure functions, no I/O; readiness itself is
harness.bench.judge's)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


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


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """A Go duration like "2s", "1m30s", "500ms" in seconds."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"{text!r} is not a duration like 2s, 1m30s or 500ms")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


@dataclass(frozen=True)
class Floor:
    """What Flux itself makes the longest dependency chain wait, at the least of its poll."""

    dependency_hops: int
    """dependsOn edges on the longest chain; each may wait one --requeue-dependency."""
    waited_hops: int
    """Kustomizations with wait: true on it; each may wait one health-check poll."""
    requeue_s: float
    health_poll_s: float

    @property
    def flux_s(self) -> float:
        return self.dependency_hops * self.requeue_s + self.waited_hops * self.health_poll_s


def chain_floor(depth: int, *, requeue: str, health_poll_s: float, wait: bool) -> Floor:
    """The floor of a chain of `depth` Kustomizations where each depends on the one before."""
    if depth < 1:
        raise ValueError(f"a dependency chain has at least one Kustomization, got {depth}")
    return Floor(depth - 1, depth if wait else 0, parse_duration(requeue), health_poll_s)


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
