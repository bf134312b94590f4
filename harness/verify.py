"""Verify that the workloads in every Flux Kustomization's inventory are rolled out."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from harness.waits import WaitTimeout, poll_until

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}


def inventory_workloads(api: Any) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of every workload listed in a Kustomization inventory.

    Flux inventory ids read `<namespace>_<name>_<group>_<kind>`."""
    custom = k8s.CustomObjectsApi(api)
    listing = custom.list_cluster_custom_object("kustomize.toolkit.fluxcd.io", "v1",
                                                "kustomizations")
    out: set[tuple[str, str, str]] = set()
    for ks in listing.get("items", []):
        for entry in ((ks.get("status") or {}).get("inventory") or {}).get("entries") or []:
            parts = str(entry.get("id", "")).split("_")
            if len(parts) >= 4 and parts[-1] in WORKLOAD_KINDS and parts[-2] == "apps":
                out.add((parts[-1], parts[0], "_".join(parts[1:-2])))
    return sorted(out)


def rollout_problem(api: Any, kind: str, namespace: str, name: str) -> str | None:
    """None when rolled out, else what is missing (the rule `kubectl rollout status` uses)."""
    apps = k8s.AppsV1Api(api)
    try:
        if kind == "Deployment":
            obj = apps.read_namespaced_deployment_status(name, namespace)
            want = obj.spec.replicas if obj.spec.replicas is not None else 1
            st = obj.status
            if (st.observed_generation or 0) < obj.metadata.generation:
                return "spec change not yet observed"
            if (st.updated_replicas or 0) < want or (st.available_replicas or 0) < want:
                return (f"{st.updated_replicas or 0} updated / {st.available_replicas or 0} "
                        f"available of {want}")
        elif kind == "StatefulSet":
            obj = apps.read_namespaced_stateful_set_status(name, namespace)
            want = obj.spec.replicas if obj.spec.replicas is not None else 1
            if (obj.status.ready_replicas or 0) < want:
                return f"{obj.status.ready_replicas or 0}/{want} ready"
        elif kind == "DaemonSet":
            obj = apps.read_namespaced_daemon_set_status(name, namespace)
            st = obj.status
            if (st.number_ready or 0) < st.desired_number_scheduled:
                return f"{st.number_ready or 0}/{st.desired_number_scheduled} ready"
    except ApiException as exc:
        return f"cannot read it: {exc.status} {exc.reason}"
    return None


def verify_rollouts(api: Any, *, timeout_s: float) -> list[str]:
    """Wait (bounded) for every inventory workload to roll out; return what never did."""
    workloads = inventory_workloads(api)
    problems: dict[str, str] = {}

    def probe() -> tuple[bool, str]:
        problems.clear()
        for kind, ns, name in workloads:
            why = rollout_problem(api, kind, ns, name)
            if why:
                problems[f"{kind} {ns}/{name}"] = why
        return not problems, "; ".join(f"{k}: {v}" for k, v in problems.items())

    try:
        poll_until(probe, timeout_s=timeout_s, what="workload rollouts", interval_s=0.2)
    except WaitTimeout:
        return [f"{k}: {v}" for k, v in sorted(problems.items())]
    return []
