"""Why workloads are not ready, from their pods: image pulls that fail (image and registry
named), crash loops (with the last log line), pods the scheduler cannot place (its message).
Converge shows these instead of a bare "health check in progress"."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import PullRefused

PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                          "ErrImageNeverPull"})


@dataclass(frozen=True)
class PodCause:
    namespace: str
    pod: str
    owner: str
    """`Kind/name` of the pod's controller (ReplicaSet, Job, ...), or the pod itself."""
    reason: str
    """ErrImagePull | ImagePullBackOff | CrashLoopBackOff | Unschedulable | ..."""
    detail: str
    image: str = ""
    container: str = ""

    @property
    def is_pull(self) -> bool:
        return self.reason in PULL_REASONS

    @property
    def registry(self) -> str:
        from harness.gitops.inputs import registry_of

        return registry_of(self.image) if self.image else ""

    def line(self) -> str:
        who = f"{self.namespace}/{self.pod}"
        if self.is_pull:
            return f"{who} {self.reason} {self.image} (registry {self.registry})"
        return f"{who} {self.reason}: {self.detail}" if self.detail else f"{who} {self.reason}"


def owner_of(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return f"Pod/{meta.get('name', '')}"


def pod_causes(pods: Iterable[Mapping[str, Any]], *,
               last_log_line: Callable[[str, str, str], str] | None = None) -> list[PodCause]:
    """One cause per stuck container or unschedulable pod; `last_log_line(ns, pod, container)`
    fills in crash loops (its previous run's last line)."""
    out: list[PodCause] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        status = pod.get("status") or {}
        owner = owner_of(pod)
        if status.get("phase") == "Pending":
            for cond in status.get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                    out.append(PodCause(ns, name, owner, str(cond.get("reason") or
                                                             "Unschedulable"),
                                        str(cond.get("message") or "").strip()))
        for cs in [*(status.get("initContainerStatuses") or []),
                   *(status.get("containerStatuses") or [])]:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if not reason or reason in ("ContainerCreating", "PodInitializing"):
                continue
            detail = str(waiting.get("message") or "").strip().splitlines()
            text = detail[-1] if detail else ""
            container = str(cs.get("name", ""))
            if reason == "CrashLoopBackOff" and last_log_line is not None:
                try:
                    text = last_log_line(ns, name, container) or text
                except Exception as exc:  # noqa: BLE001 - a log read must not hide the cause
                    text = f"(last log line unavailable: {exc})"
            out.append(PodCause(ns, name, owner, reason, text[:300],
                                image=str(cs.get("image", "")), container=container))
    return out


def refused(cause: PodCause, policy: str) -> PullRefused:
    """The error for a pull the egress policy turned away."""
    return PullRefused(namespace=cause.namespace, pod=cause.pod, owner=cause.owner,
                       image=cause.image, reason=cause.reason, detail=cause.detail,
                       policy=policy)


def summary(causes: Iterable[PodCause], *, limit: int = 3) -> str:
    items = list(causes)
    shown = "; ".join(c.line() for c in items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def live_pod_causes(api: Any) -> list[PodCause]:
    """pod_causes of every pod in the cluster (one list call; a log read per crash loop)."""
    from kubernetes.client import CoreV1Api

    from harness.kube import request

    def last_line(ns: str, pod: str, container: str) -> str:
        text = CoreV1Api(api).read_namespaced_pod_log(pod, ns, container=container,
                                                      previous=True, tail_lines=1,
                                                      _request_timeout=10)
        lines = str(text or "").strip().splitlines()
        return f"last log line: {lines[-1][:240]}" if lines else ""

    pods = request(api, "GET", "/api/v1/pods", timeout_s=15, retry_budget_s=5).get("items")
    return pod_causes(pods or [], last_log_line=last_line)
