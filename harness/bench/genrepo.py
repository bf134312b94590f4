"""Generated Flux repositories for the scaling benchmark, shaped like public home-lab repos: one
Flux Kustomization per app, each applying one HelmRelease of a chart kept in the repository,
all with `wait: true` and `postBuild.substituteFrom` a cluster-settings ConfigMap, and
`dependsOn` edges that give the depth mix those repos have.

The mix (DEPTH_MIX) was counted on three public home-lab repos (onedr0p/home-ops,
bjw-s/home-ops, budimanjojo/home-cluster: 293 Kustomizations, 262 HelmReleases): about half
the apps depend on nothing, a fifth sit four hops deep behind a storage or secrets stack, and
the deepest chains are 6. The generator keeps one infrastructure spine of depth up to
`max_depth` (7 by default: one deeper than any of the three) and hangs every other app off the
spine node one level above it, as those repos hang apps off shared infrastructure. None of
their files are used; only the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.command import Command, run

CLUSTER = "clusters/bench"
DEPTH_MIX = {1: 0.49, 2: 0.14, 3: 0.09, 4: 0.22, 5: 0.04, 6: 0.01, 7: 0.01}
"""Share of Kustomizations at each dependsOn depth in the counted home-lab repos (depth 7 is
the generator's own step beyond their deepest)."""
SETTINGS = "cluster-settings"


@dataclass(frozen=True)
class Plan:
    """The shape of one generated repository."""

    kustomizations: int
    max_depth: int = 7
    helm: bool = True
    """One HelmRelease per app (a home-lab's rule); False: a ConfigMap per app instead."""
    wait: bool = True

    def levels(self) -> list[int]:
        """How many Kustomizations sit at each depth 1..depth: the spine's one per level, the
        rest spread by DEPTH_MIX (largest remainder, so the counts add up exactly)."""
        if self.kustomizations < 1 or self.max_depth < 1:
            raise ValueError(f"cannot generate {self}: needs >= 1 Kustomization and depth >= 1")
        depth = min(self.max_depth, self.kustomizations)
        weights = {d: DEPTH_MIX.get(d, 0.0) for d in range(1, depth + 1)}
        total = sum(weights.values()) or 1.0
        rest = self.kustomizations - depth
        exact = {d: rest * w / total for d, w in weights.items()}
        counts = {d: int(x) for d, x in exact.items()}
        short = rest - sum(counts.values())
        for d in sorted(exact, key=lambda d: (counts[d] - exact[d], d))[:short]:
            counts[d] += 1
        return [1 + counts[d] for d in range(1, depth + 1)]

    @property
    def depth(self) -> int:
        return len(self.levels())

    @property
    def helmreleases(self) -> int:
        return self.kustomizations if self.helm else 0

    @property
    def flux_objects(self) -> int:
        """Objects the watcher sees: every Kustomization and HelmRelease, plus the sync pair."""
        return self.kustomizations + self.helmreleases + 2


def app_names(plan: Plan) -> list[tuple[str, str | None]]:
    """(name, the name it depends on) of every app, spine node first at each depth."""
    out: list[tuple[str, str | None]] = []
    for d, count in enumerate(plan.levels(), start=1):
        parent = f"d{d - 1}-0000" if d > 1 else None
        out += [(f"d{d}-{i:04d}", parent) for i in range(count)]
    return out


def kustomizations(plan: Plan) -> list[dict[str, object]]:
    """The Flux Kustomizations, as a home-lab's `ks.yaml` files write them."""
    docs: list[dict[str, object]] = []
    for name, parent in app_names(plan):
        spec: dict[str, object] = {
            "interval": "1h", "retryInterval": "2m", "timeout": "5m",
            "path": f"./apps/{name}", "prune": True, "wait": plan.wait,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            "postBuild": {"substitute": {"APP": name},
                          "substituteFrom": [{"kind": "ConfigMap", "name": SETTINGS}]}}
        if parent:
            spec["dependsOn"] = [{"name": parent}]
        docs.append({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                     "metadata": {"name": name, "namespace": "flux-system"}, "spec": spec})
    return docs


def helmrelease(name: str) -> dict[str, object]:
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {"interval": "1h", "timeout": "5m",
                 "chart": {"spec": {"chart": "./charts/bench", "reconcileStrategy": "Revision",
                                    "sourceRef": {"kind": "GitRepository", "name": "flux-system",
                                                  "namespace": "flux-system"}}},
                 "values": {"app": "${APP}", "domain": "${CLUSTER_DOMAIN}"}}}


def helmreleases(plan: Plan) -> list[dict[str, object]]:
    return [helmrelease(name) for name, _ in app_names(plan)] if plan.helm else []


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: bench\nversion: 0.1.0\ndescription: drdrill bench\n",
    "values.yaml": "app: none\ndomain: example.invalid\n",
    "templates/configmap.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        "data:\n  app: {{ .Values.app | quote }}\n  domain: {{ .Values.domain | quote }}\n"),
}


def _dump(path: Path, docs: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")


def write_repo(dest: Path, plan: Plan) -> Path:
    """Write the repository into `dest` (created, must not exist) and commit it; return dest."""
    dest.mkdir(parents=True)
    _dump(dest / CLUSTER / "settings.yaml", [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": SETTINGS, "namespace": "flux-system"},
         "data": {"CLUSTER_DOMAIN": "bench.drdrill.invalid"}}])
    _dump(dest / CLUSTER / "kustomizations.yaml", kustomizations(plan))
    _dump(dest / CLUSTER / "kustomization.yaml",
          [{"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": ["settings.yaml", "kustomizations.yaml"]}])
    if plan.helm:
        for name, text in CHART.items():
            (dest / "charts" / "bench" / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / "charts" / "bench" / name).write_text(text, encoding="utf-8")
    for name, _ in app_names(plan):
        app = dest / "apps" / name
        if plan.helm:
            _dump(app / "helmrelease.yaml", [helmrelease(name)])
        else:
            _dump(app / "helmrelease.yaml", [{
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": f"bench-{name}", "namespace": "bench"},
                "data": {"app": "${APP}", "domain": "${CLUSTER_DOMAIN}"}}])
        _dump(app / "kustomization.yaml", [{
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": ["helmrelease.yaml"]}])
    git = Command.of("git").in_dir(dest).with_env(
        GIT_AUTHOR_NAME="drdrill bench", GIT_AUTHOR_EMAIL="bench@drdrill.invalid",
        GIT_COMMITTER_NAME="drdrill bench", GIT_COMMITTER_EMAIL="bench@drdrill.invalid")
    run(git.arg("init", "-q", "-b", "main"))
    run(git.arg("add", "-A"))
    run(git.arg("commit", "-q", "-m", f"generated: {plan}"))
    return dest
