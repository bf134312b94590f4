"""Where each critical-path hop's time went, from the Flux controllers' own JSON logs: the
requeue delay after its dependency was ready, then its successful reconcile split into fetch +
build + apply (up to "server-side apply completed") and health checks (up to "Reconciliation
finished in <d>").

Pure: log lines in, figures out. The lines read are kustomize-controller's documented log
format (`ts`, `msg`, the object as `{"Kustomization": {"name", "namespace"}}`, `reconcileID`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_FINISHED = re.compile(r"^Reconciliation finished in (\S+?),? next run in", re.I)
_APPLIED = ("server-side apply completed", "server-side apply for cluster definitions completed")
_DEPENDENCY = "dependencies do not meet ready condition"


def go_duration(text: str) -> float | None:
    """A Go duration ("1.2s", "1m30.5s", "321.03ms", "850µs") in seconds; None if it is not."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


@dataclass(frozen=True)
class LogLine:
    t: float
    """Wall-clock seconds since the epoch."""
    ref: str
    """Kind/namespace/name of the object the line is about."""
    msg: str
    reconcile: str


def parse(lines: Iterable[str], kinds: Iterable[str] = ("Kustomization", "HelmRelease",
                                                         "GitRepository")) -> list[LogLine]:
    """The JSON log lines about objects of `kinds`; other lines are skipped."""
    wanted = tuple(kinds)
    out: list[LogLine] = []
    for raw in lines:
        if not raw.startswith("{"):
            continue
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        kind = next((k for k in wanted if isinstance(rec.get(k), Mapping)), None)
        ts = rec.get("ts")
        if kind is None or not isinstance(ts, str):
            continue
        try:
            t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        obj = rec[kind]
        out.append(LogLine(t, f"{kind}/{obj.get('namespace')}/{obj.get('name')}",
                           str(rec.get("msg") or ""), str(rec.get("reconcileID") or "")))
    return out


@dataclass(frozen=True)
class HopSplit:
    """One hop's time, in seconds, as its controller logged it."""

    dependency_checks: int
    """How many reconciles found a dependency not ready (each then waits one requeue)."""
    requeue_delay_s: float | None
    """From its dependency being ready to its successful reconcile starting: the wait that
    `--requeue-dependency` (or Flux's event queue) adds."""
    fetch_build_apply_s: float | None
    """From the successful reconcile's start to "server-side apply completed": the artifact
    download, kustomize build and server-side apply."""
    health_check_s: float | None
    """From the apply to "Reconciliation finished": health checks (wait: true) and status."""
    reconcile_s: float
    """The successful reconcile, as Flux reports it."""

    def to_dict(self) -> dict[str, float | int | None]:
        return {"dependency_checks": self.dependency_checks,
                "requeue_delay_s": self.requeue_delay_s,
                "fetch_build_apply_s": self.fetch_build_apply_s,
                "health_check_s": self.health_check_s, "reconcile_s": self.reconcile_s}


def split(lines: Iterable[LogLine], ref: str, *, not_before: float,
          dependency_ready: float | None) -> HopSplit | None:
    """The split of `ref`'s first successful reconcile at or after `not_before` (wall clock;
    the round's start), its dependency having been ready at `dependency_ready` (wall clock,
    None: it had none). None when no finished reconcile of it was logged."""
    mine = sorted((x for x in lines if x.ref == ref and x.t >= not_before), key=lambda x: x.t)
    checks = 0
    for line in mine:
        if _DEPENDENCY in line.msg.lower():
            checks += 1
            continue
        m = _FINISHED.match(line.msg)
        took = go_duration(m.group(1)) if m else None
        if took is None:
            continue
        start = line.t - took
        applied = [x.t for x in mine if x.reconcile == line.reconcile and line.reconcile
                   and x.msg in _APPLIED]
        apply_done = max(applied) if applied else None
        return HopSplit(
            dependency_checks=checks,
            requeue_delay_s=None if dependency_ready is None else
            round(max(0.0, start - dependency_ready), 3),
            fetch_build_apply_s=None if apply_done is None else round(apply_done - start, 3),
            health_check_s=None if apply_done is None else round(line.t - apply_done, 3),
            reconcile_s=round(took, 3))
    return None
