"""The benchmark's independent judge: when was each Flux object ready at the commit under test,
decided from the watcher's event log by Flux's documented rules alone.

Written from the kstatus specification and the Flux API docs (Kustomization, HelmRelease,
GitRepository status sections), deliberately sharing no code with drdrill's own readiness rule
(`harness.converge`, `harness.flux`): if drdrill's rule were wrong, the two must disagree.

The rules, as documented:
- kstatus: `status.observedGeneration` differing from `metadata.generation` means the status
  is not about the current spec (InProgress); `Reconciling=True` is InProgress; `Stalled=True`
  is Failed; otherwise Current.
- Flux: an object is ready when, on top of that, its `Ready` condition is `True` and (where the
  condition carries one) was observed for the current generation. `spec.suspend: true` is not
  ready: the controller does nothing.
- At the revision: a GitRepository's `status.artifact.revision` names the commit
  (`<ref>@sha1:<hex>`, or the older `<branch>/<hex>`); a Kustomization's
  `status.lastAppliedRevision` names it; a HelmRelease whose chart comes from the repository
  with `reconcileStrategy: Revision` was installed from a chart version whose build metadata
  (`0.1.0+<first 12 hex>`) is a prefix of the commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CURRENT, IN_PROGRESS, FAILED = "Current", "InProgress", "Failed"


@dataclass(frozen=True)
class Judgement:
    """The judge's view of one object at one instant."""

    status: str
    """kstatus: Current, InProgress or Failed."""
    at_commit: bool | None
    """Whether the object's revision names the commit; None where the kind carries none."""
    why: str

    @property
    def ready(self) -> bool:
        return self.status == CURRENT and self.at_commit is not False


_HEX = re.compile(r"[0-9a-f]{7,64}")


def commit_of(revision: str | None) -> str | None:
    """The commit hex a Flux revision string names, in any of the formats Flux has used:
    `main@sha1:<hex>`, `sha1:<hex>`, `main/<hex>` (before Flux 2.0), or a bare `<hex>`."""
    if not revision:
        return None
    tail = revision.rsplit("@", 1)[-1]
    if ":" in tail:
        tail = tail.split(":", 1)[1]
    elif "/" in tail:
        tail = tail.rsplit("/", 1)[1]
    tail = tail.lower()
    return tail if _HEX.fullmatch(tail) else None


def names_commit(revision: str | None, commit: str) -> bool:
    """Does `revision` name `commit` (hex, or a revision string naming it), the shorter of the
    two being a prefix of the other and at least 7 hex long?"""
    found, want = commit_of(revision), commit_of(commit)
    if found is None or want is None:
        return False
    short = min(len(found), len(want))
    return short >= 7 and found[:short] == want[:short]


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    status = obj.get("status") or {}
    return {str(c.get("type")): c for c in status.get("conditions") or []
            if isinstance(c, Mapping)}


def kstatus(obj: Mapping[str, Any]) -> tuple[str, str]:
    """kstatus' generic rule for a custom resource with standard conditions, plus Flux's
    requirement of `Ready=True` for the current generation."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    conds = _conditions(obj)
    if meta.get("deletionTimestamp"):
        return IN_PROGRESS, "being deleted"
    if generation is not None and observed != generation:
        return IN_PROGRESS, f"observedGeneration {observed} is not generation {generation}"
    stalled = conds.get("Stalled")
    if stalled is not None and stalled.get("status") == "True":
        return FAILED, f"Stalled: {stalled.get('reason')}: {stalled.get('message')}"
    reconciling = conds.get("Reconciling")
    if reconciling is not None and reconciling.get("status") == "True":
        return IN_PROGRESS, f"Reconciling: {reconciling.get('reason')}"
    ready = conds.get("Ready")
    if ready is None:
        return IN_PROGRESS, "no Ready condition yet"
    cond_gen = ready.get("observedGeneration")
    if generation is not None and cond_gen is not None and cond_gen != generation:
        return IN_PROGRESS, f"Ready observed for generation {cond_gen}, not {generation}"
    if ready.get("status") != "True":
        return IN_PROGRESS, f"Ready={ready.get('status')}: {ready.get('reason')}"
    return CURRENT, f"Ready: {ready.get('reason')}"


def _helm_chart_commit(obj: Mapping[str, Any]) -> str | None:
    """The build metadata of the chart version the release was last made from, when that chart
    was packaged from a Git source with reconcileStrategy Revision (else None)."""
    status = obj.get("status") or {}
    history = status.get("history") or []
    version = (history[0] or {}).get("chartVersion") if history else None
    version = version or status.get("lastAttemptedRevision")
    if not version or "+" not in str(version):
        return None
    return str(version).split("+", 1)[1]


def judge(kind: str, obj: Mapping[str, Any], commit: str) -> Judgement:
    """Is `obj` (a GitRepository, Kustomization or HelmRelease) ready at `commit`?"""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if spec.get("suspend") is True:
        return Judgement(FAILED, None, "suspended")
    state, why = kstatus(obj)
    if kind == "GitRepository":
        revision = (status.get("artifact") or {}).get("revision")
        return Judgement(state, names_commit(revision, commit), f"{why}; artifact {revision}")
    if kind == "Kustomization":
        applied = status.get("lastAppliedRevision")
        return Judgement(state, names_commit(applied, commit), f"{why}; applied {applied}")
    if kind == "HelmRelease":
        chart_commit = _helm_chart_commit(obj)
        if chart_commit is None:  # a chart from a Helm repository: no commit to compare
            return Judgement(state, None, why)
        return Judgement(state, names_commit(chart_commit, commit), f"{why}; chart +{chart_commit}")
    return Judgement(state, None, why)


def ready_times(events: Iterable[Mapping[str, Any]], commit: str) -> dict[str, float | None]:
    """When each object was first judged ready at `commit`, from the watcher's events
    ({"t", "type", "kind", "ref", "object"} in arrival order); None: seen, never ready.

    Once ready an object stays done (Flux flips Ready during routine reconciles); an object
    deleted before it was ever ready is forgotten, as it is no longer part of the cluster."""
    out: dict[str, float | None] = {}
    for ev in events:
        ref = str(ev["ref"])
        if out.get(ref) is not None:
            continue
        if ev["type"] == "DELETED":
            out.pop(ref, None)
            continue
        out[ref] = float(ev["t"]) if judge(str(ev["kind"]), ev["object"], commit).ready else None
    return out


def last_ready(ready_at: Mapping[str, float | None]) -> float | None:
    """The instant the last object became ready; None while any object is not."""
    if not ready_at or any(t is None for t in ready_at.values()):
        return None
    return max(t for t in ready_at.values() if t is not None)
