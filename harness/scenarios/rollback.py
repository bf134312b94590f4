"""rollback: commit a change that breaks an app (its new pods can never be scheduled, so the
rollout and Flux's health check fail), detect it, `git revert` it in the served repo, and
measure the time until converged at the revert commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.core.scenario import BUILD, Scenario, phases
from harness.errors import ExpectationFailed, HarnessError
from harness.report.model import FigureItem, RecoveryFigure
from harness.scenarios._common import (
    commit_to_served,
    condition,
    inventory,
    iter_yaml_docs,
    kustomizations,
    notify_push,
    poll,
    ref_of,
)

NAME = "rollback"
BROKEN_LABEL = "drdrill.io/rollback-drill"
GATE = "--feature-gates=CancelHealthCheckOnNewRevision=true"


def find_deployment_file(top: Path, names: Sequence[tuple[str, str]]) -> tuple[Path, str, str]:
    """The repo file that defines one of the managed Deployments (namespace, name) as a whole
    manifest (not a patch): what a person would edit."""
    wanted = {n for _, n in names}
    for path in sorted(top.rglob("*.y*ml")):
        if ".git" in path.parts:
            continue
        for _, doc in iter_yaml_docs(path):
            if doc.get("kind") != "Deployment":
                continue
            name = (doc.get("metadata") or {}).get("name")
            template = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
            if name in wanted and template.get("containers"):
                return path, str(name), next(ns for ns, n in names if n == name)
    raise HarnessError("rollback: no managed Deployment is defined as a whole manifest in the "
                       "repo, so there is nothing to break",
                       fix="add a Deployment to the repo, or drill another scenario")


def break_manifest(path: Path, name: str) -> None:
    """Make the Deployment's new pods unschedulable: a nodeSelector no node has."""
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "Deployment" and \
                (doc.get("metadata") or {}).get("name") == name:
            spec = doc["spec"]["template"]["spec"]
            spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), BROKEN_LABEL: "no-node"}
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")


def broken_signs(kss: Sequence[Mapping[str, Any]], pods: Sequence[Any], bad: str) -> list[str]:
    """How the bad commit shows: Flux's health check failing on it, or pods unschedulable."""
    signs = []
    for ks in kss:
        st = ks.get("status") or {}
        c = condition(dict(ks))
        if str(st.get("lastAttemptedRevision", "")).endswith(bad) and \
                c.get("status") == "False":
            signs.append(f"{ref_of(dict(ks))}: {c.get('reason')}: {c.get('message', '')[:200]}")
    for pod in pods:
        for c in (pod.status.conditions or []) if pod.status else []:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                signs.append(f"Pod {pod.metadata.namespace}/{pod.metadata.name}: Unschedulable")
    return signs


def bad_commit(s: Any, rnd: int) -> None:
    from kubernetes import client as k8s

    deployments = sorted((ns, n) for (g, k, ns, n) in inventory(s)
                         if g == "apps" and k == "Deployment")
    if not deployments:
        raise HarnessError("rollback: no Deployment in any Flux inventory to break")
    chosen: dict[str, str] = {}

    def edit(work: Path) -> str:
        path, name, ns = find_deployment_file(work, deployments)
        break_manifest(path, name)
        chosen.update(file=str(path.relative_to(work)), deployment=f"{ns}/{name}")
        return chosen["file"]

    s.scratch["good"] = s.rev.sha
    bad = commit_to_served(s, "drdrill rollback drill: a change that breaks an app", edit)
    s.scratch.update(bad=bad, broken=chosen, committed_at=s.drill.mark("bad-commit"))
    notify_push(s)
    s.progress(f"rollback: committed {bad[:12]} breaking Deployment {chosen['deployment']} "
               f"({chosen['file']})")
    ns = chosen["deployment"].split("/", 1)[0]
    core = k8s.CoreV1Api(s.api)
    signs: list[str] = []

    def probe() -> tuple[bool, str]:
        signs[:] = broken_signs(kustomizations(s), core.list_namespaced_pod(ns).items, bad)
        return bool(signs), ""

    ok, _ = poll(probe, timeout_s=float(s.option("detect_timeout_s")), interval_s=0.25)
    s.scratch["signs"] = list(signs)
    if not ok:
        raise ExpectationFailed(NAME, [f"the breaking commit {bad[:12]} (Deployment "
                                       f"{chosen['deployment']}) was not detected as broken "
                                       f"within {s.option('detect_timeout_s')}s"])
    s.scratch["detected_at"] = s.drill.mark("break-detected")
    s.progress(f"rollback: detected: {signs[0]}")


def revert(s: Any, rnd: int) -> None:
    sha = commit_to_served(s, "", revert=True)
    s.scratch.update(revert=sha, reverted_at=s.drill.mark("revert-pushed"))
    notify_push(s)
    s.progress(f"rollback: pushed the revert {sha[:12]}")


def figures(s: Any) -> Sequence[RecoveryFigure]:
    c, d = s.scratch.get("committed_at"), s.scratch.get("detected_at")
    return [
        RecoveryFigure(
            "time_to_rollback_s", "time-to-rollback", s.drill.time_to_ready(round=2),
            "`git revert` pushed until converged at the revert commit (objects ready, the "
            "broken rollout rolled back).",
            items=(FigureItem(f"bad commit {str(s.scratch.get('bad', ''))[:12]}", None,
                              f"breaks Deployment {s.scratch.get('broken', {}).get('deployment')}"),
                   FigureItem(f"revert {str(s.scratch.get('revert', ''))[:12]}", None),
                   *(FigureItem("detected by", None, sign)
                     for sign in s.scratch.get("signs", [])[:3]))),
        RecoveryFigure("time_to_detect_s", "time-to-detect",
                       None if c is None or d is None else round(d - c, 3),
                       "Bad commit pushed until the break was seen (health check failing or "
                       "pods unschedulable)."),
    ]


SCENARIO = Scenario(
    name=NAME,
    summary="commit a change that breaks an app, detect it, git revert; time-to-rollback",
    description="Commit a change that makes a managed Deployment's pods unschedulable, detect "
                "the break, `git revert` it in the served repo and measure the time until "
                "converged at the revert commit.",
    phases=phases((*BUILD, "disaster"), ("recover", "converge", "verify")),
    figure="time-to-rollback",
    disaster=bad_commit,
    recover=revert,
    figures=figures,
    flux_overrides={"extra_flags": {"kustomize-controller": [GATE]}},
    local_changes=(f"rollback: kustomize-controller runs with {GATE}, so a revert does not wait "
                   "for the bad revision's health-check timeout",),
    options={"detect_timeout_s": 120},
)
