"""Generated Flux repositories for the scaling benchmark: N Kustomizations in dependsOn chains
of depth 1..max_depth, and HelmReleases from a chart in the repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.command import Command, run

CLUSTER = "clusters/bench"


@dataclass(frozen=True)
class Plan:
    """The shape of one generated repository."""

    kustomizations: int
    max_depth: int = 5
    helmreleases: int = 0
    wait: bool = True

    def chains(self) -> list[int]:
        """Chain lengths cycling 1, 2, ..., max_depth until `kustomizations` are placed."""
        if self.kustomizations < 1 or self.max_depth < 1 or self.helmreleases < 0:
            raise ValueError(f"cannot generate {self}: needs >= 1 Kustomization and depth >= 1")
        out: list[int] = []
        left, length = self.kustomizations, 1
        while left:
            take = min(length, left)
            out.append(take)
            left -= take
            length = length % self.max_depth + 1
        return out

    @property
    def depth(self) -> int:
        return max(self.chains())


def kustomizations(plan: Plan) -> list[dict[str, object]]:
    """The Flux Kustomizations, named c<chain>-<hop>, each depending on the hop before it."""
    docs: list[dict[str, object]] = []
    for c, length in enumerate(plan.chains()):
        for hop in range(length):
            spec: dict[str, object] = {
                "interval": "10m", "retryInterval": "30s", "timeout": "2m",
                "path": f"./apps/c{c:03d}-{hop}", "prune": True, "wait": plan.wait,
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}
            if hop:
                spec["dependsOn"] = [{"name": f"c{c:03d}-{hop - 1}"}]
            docs.append({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                         "metadata": {"name": f"c{c:03d}-{hop}", "namespace": "flux-system"},
                         "spec": spec})
    return docs


def helmreleases(plan: Plan) -> list[dict[str, object]]:
    return [{
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": f"hr-{i:03d}", "namespace": "bench"},
        "spec": {"interval": "10m", "timeout": "2m",
                 "chart": {"spec": {"chart": "./charts/bench", "reconcileStrategy": "Revision",
                                    "sourceRef": {"kind": "GitRepository", "name": "flux-system",
                                                  "namespace": "flux-system"}}},
                 "values": {"index": i}}} for i in range(plan.helmreleases)]


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: bench\nversion: 0.1.0\ndescription: drdrill bench\n",
    "values.yaml": "index: 0\n",
    "templates/configmap.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        "data:\n  index: {{ .Values.index | quote }}\n"),
}


def _dump(path: Path, docs: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")


def write_repo(dest: Path, plan: Plan) -> Path:
    """Write the repository into `dest` (created, must not exist) and commit it; return dest."""
    dest.mkdir(parents=True)
    ks = kustomizations(plan)
    _dump(dest / CLUSTER / "kustomizations.yaml", ks)
    resources = ["kustomizations.yaml"]
    if plan.helmreleases:
        _dump(dest / CLUSTER / "helmreleases.yaml",
              [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}},
               *helmreleases(plan)])
        resources.append("helmreleases.yaml")
        for name, text in CHART.items():
            (dest / "charts" / "bench" / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / "charts" / "bench" / name).write_text(text, encoding="utf-8")
    _dump(dest / CLUSTER / "kustomization.yaml",
          [{"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": resources}])
    for doc in ks:
        name = str(doc["metadata"]["name"])  # type: ignore[index]
        _dump(dest / "apps" / name / "configmap.yaml", [{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"bench-{name}", "namespace": "default"},
            "data": {"chain": name}}])
        _dump(dest / "apps" / name / "kustomization.yaml", [{
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": ["configmap.yaml"]}])
    git = Command.of("git").in_dir(dest).with_env(
        GIT_AUTHOR_NAME="drdrill bench", GIT_AUTHOR_EMAIL="bench@drdrill.invalid",
        GIT_COMMITTER_NAME="drdrill bench", GIT_COMMITTER_EMAIL="bench@drdrill.invalid")
    run(git.arg("init", "-q", "-b", "main"))
    run(git.arg("add", "-A"))
    run(git.arg("commit", "-q", "-m", f"generated: {plan}"))
    return dest
