"""node-loss: a node that runs workloads disappears (embedded: its kwok Node is deleted; a
provider that can fail nodes stops it); the workloads reschedule onto the other nodes, and the
figure is the time until they are rolled out again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.core.scenario import BUILD, Scenario, phases
from harness.errors import ExpectationFailed
from harness.report.model import RecoveryFigure
from harness.scenarios._common import figure_item, inventory, poll
from harness.verify import rollout_problem

NAME = "node-loss"


def pods_by_node(s: Any) -> dict[str, list[tuple[str, str, str]]]:
    """node -> (kind, ns/name of the owning workload, pod) for every inventory Deployment."""
    from kubernetes import client as k8s

    core, apps = k8s.CoreV1Api(s.api), k8s.AppsV1Api(s.api)
    out: dict[str, list[tuple[str, str, str]]] = {}
    for (group, kind, ns, name) in sorted(inventory(s)):
        if group != "apps" or kind != "Deployment":
            continue
        dep = apps.read_namespaced_deployment(name, ns)
        selector = ",".join(f"{k}={v}" for k, v in (dep.spec.selector.match_labels or {}).items())
        for pod in core.list_namespaced_pod(ns, label_selector=selector).items:
            if pod.spec.node_name:
                out.setdefault(pod.spec.node_name, []).append(
                    (kind, f"{ns}/{name}", pod.metadata.name))
    return out


def off_node_problems(workloads: Sequence[tuple[str, str]], pods_on: Mapping[str, str],
                      rollout: Mapping[str, str | None], lost: str) -> list[str]:
    """Why the workloads are not back: a pod still bound to the lost node, or not rolled out.

    `pods_on`: pod -> node of every pod of the workloads; `rollout`: workload -> problem."""
    problems = [f"{kind} {ref}: {why}" for kind, ref in workloads
                if (why := rollout.get(ref))]
    problems += [f"pod {pod} still on the lost node {lost}"
                 for pod, node in sorted(pods_on.items()) if node == lost]
    return problems


def lose_node(s: Any, rnd: int) -> None:
    from kubernetes import client as k8s

    by_node = pods_by_node(s)
    if not by_node:
        raise ExpectationFailed(NAME, ["no inventory Deployment has a pod on any node: nothing "
                                       "would be lost"])
    lost = max(by_node, key=lambda n: (len(by_node[n]), n))
    s.scratch.update(lost_node=lost, affected=sorted({(k, ref) for k, ref, _ in by_node[lost]}),
                     lost_pods=[p for _, _, p in by_node[lost]])
    s.collect(rnd)
    fail_node = getattr(s.provider, "fail_node", None)  # a provider that can stop a node
    if callable(fail_node):
        fail_node(lost)
    else:  # embedded: kwok simulates the node; without its Node object it is gone
        k8s.CoreV1Api(s.api).delete_node(lost)
    s.scratch["lost_at"] = s.drill.mark("node-lost")
    s.progress(f"node-loss: {lost} is gone with {len(by_node[lost])} pods of "
               f"{len(s.scratch['affected'])} workloads")


def wait_rescheduled(s: Any, rnd: int) -> None:
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(s.api)
    lost: str = s.scratch["lost_node"]
    affected: list[tuple[str, str]] = [tuple(a) for a in s.scratch["affected"]]
    namespaces = sorted({ref.split("/", 1)[0] for _, ref in affected})
    done_at: dict[str, float] = {}

    def probe() -> tuple[bool, str]:
        rollout = {}
        for kind, ref in affected:
            ns, name = ref.split("/", 1)
            rollout[ref] = rollout_problem(s.api, kind, ns, name)
        pods_on = {f"{ns}/{p.metadata.name}": p.spec.node_name or ""
                   for ns in namespaces for p in core.list_namespaced_pod(ns).items}
        for kind, ref in affected:
            ns = ref.split("/", 1)[0]
            if ref not in done_at and not off_node_problems(
                    [(kind, ref)], {p: n for p, n in pods_on.items() if p.startswith(ns + "/")},
                    rollout, lost):
                done_at[ref] = s.drill.clock()
        problems = off_node_problems(affected, pods_on, rollout, lost)
        return not problems, "; ".join(problems)

    ok, last = poll(probe, timeout_s=float(s.option("reschedule_timeout_s")), interval_s=0.5)
    s.scratch["rescheduled_at"] = s.drill.clock() if ok else None
    s.scratch["done_at"] = done_at
    if not ok:
        raise ExpectationFailed(NAME, [f"workloads of the lost node {lost} not rolled out "
                                       f"elsewhere within {s.option('reschedule_timeout_s')}s: "
                                       f"{last}"])


def figures(s: Any) -> Sequence[RecoveryFigure]:
    lost_at, back = s.scratch.get("lost_at"), s.scratch.get("rescheduled_at")
    done: dict[str, float] = s.scratch.get("done_at") or {}
    value = None if lost_at is None or back is None else round(back - lost_at, 3)
    return [RecoveryFigure(
        "time_to_reschedule_s", "time-to-reschedule", value,
        f"Node {s.scratch.get('lost_node', '?')} lost until every workload that ran on it is "
        "rolled out again with no pod left on it.",
        items=tuple(figure_item(ref, None if lost_at is None or ref not in done else
                                done[ref] - lost_at, "rolled out again off the lost node")
                    for _, ref in s.scratch.get("affected", [])))]


SCENARIO = Scenario(
    name=NAME,
    summary="a node with workloads is lost; workloads reschedule; time until rolled out again",
    description="Delete the node that runs the most workloads (kwok node on embedded, a "
                "stopped worker where the provider can fail nodes) and measure the time until "
                "every affected workload is rolled out again off that node.",
    phases=phases((*BUILD, "disaster"), ("recover", "converge", "verify")),
    figure="time-to-reschedule",
    disaster=lose_node,
    recover=wait_rescheduled,
    figures=figures,
    options={"reschedule_timeout_s": 180},
)
