"""drift: change Flux-managed objects behind Flux's back (scale a Deployment, edit a ConfigMap,
delete a Service) and measure how long Flux takes to revert each one, exactly. An object Flux
does not manage is reported as not reverted: a failed expectation, not a hang."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.core.scenario import BUILD, Scenario, phases
from harness.errors import ConfigError, ExpectationFailed
from harness.report.model import RecoveryFigure
from harness.scenarios._common import figure_item, inventory, poll

NAME = "drift"
INTERVAL = "15s"
"""Every Kustomization's interval during this drill: Flux reverts drift on its own schedule, and
the sample repo's 10m would make the drill wait 10 minutes to learn nothing new."""
ACTIONS = {"Deployment": "scale", "ConfigMap": "edit", "Service": "delete"}


@dataclass(frozen=True)
class Target:
    kind: str
    namespace: str
    name: str
    action: str

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def parse_targets(text: str) -> list[Target]:
    """`Kind/ns/name[,Kind/ns/name...]`; the action follows the kind (scale, edit, delete)."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        bits = part.split("/")
        if len(bits) != 3 or bits[0] not in ACTIONS:
            raise ConfigError(f"drift target {part!r} is not Kind/namespace/name with Kind one of "
                              f"{', '.join(ACTIONS)}", fix="e.g. --scenario-option "
                              "targets=Deployment/podinfo/podinfo,ConfigMap/echo/echo-config")
        out.append(Target(bits[0], bits[1], bits[2], ACTIONS[bits[0]]))
    return out


def pick_targets(managed: Mapping[tuple[str, str, str, str], str]) -> list[Target]:
    """One managed object of each kind the drill knows how to drift, first by name."""
    out = []
    for kind, group in (("Deployment", "apps"), ("ConfigMap", ""), ("Service", "")):
        names = sorted((ns, n) for (g, k, ns, n) in managed if k == kind and g == group
                       and not n.startswith("kube-root-ca"))
        if names:
            out.append(Target(kind, names[0][0], names[0][1], ACTIONS[kind]))
    return out


def state(api: Any, t: Target) -> Any:
    """What must come back exactly: replicas, ConfigMap data, Service ports and selector.
    None when the object does not exist."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    try:
        if t.kind == "Deployment":
            return apps.read_namespaced_deployment(t.name, t.namespace).spec.replicas
        if t.kind == "ConfigMap":
            return dict(core.read_namespaced_config_map(t.name, t.namespace).data or {})
        svc = core.read_namespaced_service(t.name, t.namespace).spec
        return (dict(svc.selector or {}), sorted((p.port, p.protocol, str(p.target_port))
                                                 for p in svc.ports or []))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def inflict(api: Any, t: Target, before: Any) -> None:
    from kubernetes import client as k8s

    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    if t.action == "scale":
        apps.patch_namespaced_deployment_scale(t.name, t.namespace,
                                               {"spec": {"replicas": int(before or 1) + 2}})
    elif t.action == "edit":
        key = sorted(before)[0] if before else "drdrill-drift"
        core.patch_namespaced_config_map(t.name, t.namespace,
                                         {"data": {key: "changed behind Flux's back"}})
    else:
        core.delete_namespaced_service(t.name, t.namespace)


def drift(s: Any, rnd: int) -> None:
    managed = inventory(s)
    given = s.option("targets")
    targets = parse_targets(str(given)) if given else pick_targets(managed)
    if not targets:
        raise ExpectationFailed(NAME, ["no Deployment, ConfigMap or Service in any Flux "
                                       "inventory: nothing to drift"])
    owners = {f"{k}/{ns}/{n}": owner for (_, k, ns, n), owner in managed.items()}
    before = {t.ref: state(s.api, t) for t in targets}
    missing = [t.ref for t in targets if before[t.ref] is None]
    if missing:
        raise ConfigError(f"drift targets do not exist: {', '.join(missing)}",
                          fix="name objects that exist in the cluster")
    for t in targets:
        inflict(s.api, t, before[t.ref])
    s.scratch.update(targets=targets, before=before, owners=owners,
                     drifted_at=s.drill.mark("drifted"))
    s.progress("drift: " + ", ".join(f"{t.action} {t.ref}" for t in targets))


def watch_reverts(api_state: Callable[[Target], Any], targets: Sequence[Target],
                  before: Mapping[str, Any], *, timeout_s: float,
                  clock: Callable[[], float]) -> dict[str, float | None]:
    """ref -> moment it was seen restored exactly (None: not within `timeout_s`)."""
    reverted: dict[str, float | None] = {t.ref: None for t in targets}

    def probe() -> tuple[bool, str]:
        for t in targets:
            if reverted[t.ref] is None and api_state(t) == before[t.ref]:
                reverted[t.ref] = clock()
        waiting = [r for r, v in reverted.items() if v is None]
        return not waiting, ", ".join(waiting)

    poll(probe, timeout_s=timeout_s, interval_s=0.2, clock=clock)
    return reverted


def revert_problems(reverted: Mapping[str, float | None], owners: Mapping[str, str],
                    timeout_s: float) -> list[str]:
    problems = []
    for ref, at in sorted(reverted.items()):
        if at is not None:
            continue
        if ref not in owners:
            problems.append(f"{ref} is not managed by Flux (in no Kustomization's inventory): "
                            "not reverted")
        else:
            problems.append(f"{ref} (managed by Kustomization {owners[ref]}) not reverted "
                            f"within {timeout_s:.0f}s")
    return problems


def wait_reverted(s: Any, rnd: int) -> None:
    timeout = float(s.option("revert_timeout_s"))
    reverted = watch_reverts(lambda t: state(s.api, t), s.scratch["targets"],
                             s.scratch["before"], timeout_s=timeout, clock=s.drill.clock)
    s.scratch["reverted"] = reverted
    problems = revert_problems(reverted, s.scratch["owners"], timeout)
    if problems:
        raise ExpectationFailed(NAME, problems)


def figures(s: Any) -> Sequence[RecoveryFigure]:
    t0 = s.scratch.get("drifted_at")
    reverted: Mapping[str, float | None] = s.scratch.get("reverted") or {}
    owners = s.scratch.get("owners") or {}
    items = tuple(
        figure_item(f"{t.action} {t.ref}", None if reverted.get(t.ref) is None or t0 is None
                    else reverted[t.ref] - t0,
                    f"managed by {owners[t.ref]}" if t.ref in owners else "not managed by Flux")
        for t in s.scratch.get("targets", []))
    values = [i.value_s for i in items]
    worst = None if not values or any(v is None for v in values) else max(
        v for v in values if v is not None)
    return [RecoveryFigure(
        "time_to_revert_s", "time-to-revert", worst,
        f"Drift until Flux restored every object exactly (the slowest; Kustomization interval "
        f"{INTERVAL} in this drill).", items=items,
        limit_s=float(s.option("revert_timeout_s")), met=worst is not None)]


_INTERVAL_PATCH = {
    "patch": f"apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n"
             f"metadata:\n  name: any\nspec:\n  interval: {INTERVAL}\n",
    "target": {"group": "kustomize.toolkit.fluxcd.io", "kind": "Kustomization"},
}

SCENARIO = Scenario(
    name=NAME,
    summary="change managed objects behind Flux's back; time-to-revert per object",
    description="Scale a Deployment, edit a ConfigMap and delete a Service that Flux manages, "
                "then measure the time until Flux restored each one exactly. Objects Flux does "
                "not manage are reported as not reverted.",
    phases=phases((*BUILD, "disaster"), ("recover", "converge", "verify")),
    figure="time-to-revert",
    disaster=drift,
    recover=wait_reverted,
    figures=figures,
    flux_overrides={"kustomization_interval": INTERVAL},
    sync_patches=(_INTERVAL_PATCH,),
    local_changes=(f"drift: every Kustomization's interval set to {INTERVAL} (root included) so "
                   "Flux reverts drift within the drill",),
    options={"targets": None, "revert_timeout_s": 60},
)
