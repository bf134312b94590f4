"""bootstrap-twice: run the bootstrap again on a converged cluster (an operator re-running
`flux bootstrap`, a pipeline retrying). Nothing may be re-applied at a new revision, no workload
restarted, and the second bootstrap must be fast."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.core.scenario import BUILD, Scenario, phases
from harness.errors import ExpectationFailed
from harness.report.model import RecoveryFigure
from harness.scenarios._common import inventory, kustomizations, ref_of

NAME = "bootstrap-twice"
STABLE_KINDS = frozenset({"ConfigMap", "Service", "Namespace", "ServiceAccount", "Secret"})


def snapshot(s: Any) -> dict[str, str]:
    """What a second bootstrap must leave alone: key -> value to compare.

    Kustomizations: their applied revision; workloads: spec generation; pods: UID (a restart
    makes a new pod); ConfigMaps, Services, ...: resourceVersion (any write bumps it)."""
    from kubernetes import client as k8s

    out: dict[str, str] = {}
    for ks in kustomizations(s):
        out[f"{ref_of(ks)} lastAppliedRevision"] = str(
            (ks.get("status") or {}).get("lastAppliedRevision"))
    core, apps = k8s.CoreV1Api(s.api), k8s.AppsV1Api(s.api)
    namespaces: set[str] = set()
    for (group, kind, ns, name) in inventory(s):
        if kind == "Deployment" and group == "apps":
            d = apps.read_namespaced_deployment(name, ns)
            out[f"Deployment/{ns}/{name} generation"] = str(d.metadata.generation)
            namespaces.add(ns)
        elif kind in STABLE_KINDS and not group:
            read = {"ConfigMap": core.read_namespaced_config_map,
                    "Service": core.read_namespaced_service,
                    "Secret": core.read_namespaced_secret,
                    "ServiceAccount": core.read_namespaced_service_account}.get(kind)
            obj = core.read_namespace(name) if kind == "Namespace" else (
                read(name, ns) if read else None)
            if obj is not None:
                out[f"{kind}/{ns or '-'}/{name} resourceVersion"] = str(
                    obj.metadata.resource_version)
    for ns in sorted(namespaces):
        for pod in core.list_namespaced_pod(ns).items:
            out[f"Pod/{ns}/{pod.metadata.name} uid"] = str(pod.metadata.uid)
    return out


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Every difference, named: a pod gone or new is a restart; a new value is a re-apply."""
    problems = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        what = key.rsplit(" ", 1)
        if key.startswith("Pod/"):
            problems.append(f"{what[0]}: {'restarted (gone)' if new is None else 'new pod'}"
                            " after the second bootstrap")
        else:
            problems.append(f"{what[0]}: {what[1]} changed {old} -> {new}")
    return problems


def take_before(s: Any, rnd: int) -> None:
    """The "disaster" is only the second bootstrap that follows; remember what must not change."""
    s.scratch["before"] = snapshot(s)


def expectation(s: Any) -> None:
    problems = changes(s.scratch.get("before") or {}, snapshot(s))
    first, second = s.drill.time_to_ready(round=1), s.drill.time_to_ready(round=2)
    limit = s.option("max_second_bootstrap_s")
    bound = float(limit) if limit is not None else first
    if second is not None and bound is not None and second > bound:
        problems.append(f"the second bootstrap took {second:.1f}s, more than "
                        f"{'the first build' if limit is None else 'the limit'} ({bound:.1f}s)")
    if problems:
        raise ExpectationFailed(NAME, problems)


def figures(s: Any) -> Sequence[RecoveryFigure]:
    second = s.drill.time_to_ready(round=2)
    limit = s.option("max_second_bootstrap_s")
    bound = float(limit) if limit is not None else s.drill.time_to_ready(round=1)
    return [RecoveryFigure(
        "second_bootstrap_s", "second bootstrap", second,
        "Second bootstrap on the converged cluster until converged again; nothing re-applied "
        "at a new revision, no workload restarted.", limit_s=bound,
        met=None if second is None or bound is None else second <= bound)]


SCENARIO = Scenario(
    name=NAME,
    summary="bootstrap again on a converged cluster: nothing re-applied or restarted, and fast",
    description="Bootstrap a converged cluster a second time and check that no Flux object is "
                "re-applied at a new revision, no workload restarts (pod UIDs, generations, "
                "resourceVersions compared) and the second bootstrap is fast.",
    phases=phases((*BUILD, "disaster"), ("bootstrap", "converge", "verify")),
    figure="second bootstrap",
    disaster=take_before,
    expectation=expectation,
    figures=figures,
    options={"max_second_bootstrap_s": None},  # None: no slower than the first build
)
