"""The repository model: walk a repo from its cluster path the way Flux would, render every
Kustomization, build the dependsOn graph and collect what a recovery needs (manual inputs,
external dependencies, what the embedded cluster cannot run). Offline: no cluster code."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.errors import (
    DependencyCycleError,
    MissingPathError,
    RepoError,
    UnknownDependencyError,
)
from harness.gitops import apiversions, bootstrap, flux_config, inputs, yamlgo
from harness.gitops.bootstrap import FLUX_NAMESPACE, SYNC_NAME
from harness.gitops.inputs import ExternalDependency, Limit, ManualInput, Obj
from harness.gitops.kinds import KINDS, RUNNABLE_CONTROLLERS, KindSpec, dig, spec_of
from harness.gitops.render import Artifact, Build, Substitution, copy_into, substitute
from harness.gitops.sourceignore import source_files

Severity = Literal["invalid", "unsupported"]
ROOT_FILE = "(drdrill bootstrap)"


@dataclass(frozen=True)
class Problem:
    severity: Severity
    file: str | None
    object: str | None
    message: str
    fix: str | None
    error: RepoError | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "file": self.file, "object": self.object,
                "message": self.message, "fix": self.fix}


@dataclass(frozen=True)
class FluxObject:
    kind: str
    namespace: str
    name: str
    source_file: str
    """The repo file (or rendered path) that defines the object."""
    depends_on: tuple[str, ...] = ()
    path: str | None = None
    """Kustomization spec.path, normalised relative to the repo top (rendered from the repo)."""
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    api_version: str = ""
    owner: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def kind_spec(self) -> KindSpec | None:
        return spec_of({"apiVersion": self.api_version, "kind": self.kind})


@dataclass(frozen=True)
class RepoModel:
    top: Path
    cluster_path: str
    objects: tuple[FluxObject, ...]
    manual_inputs: tuple[ManualInput, ...]
    produced: frozenset[tuple[str, str, str]]
    """(kind, namespace, name) of every object the repo's Kustomizations render."""
    sync_patches: tuple[dict[str, Any], ...] = ()
    local_changes: tuple[str, ...] = ()
    """What the drill changes to run against a local copy, said in the report."""
    notes: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    external_dependencies: tuple[ExternalDependency, ...] = ()
    limits: tuple[Limit, ...] = ()
    """Objects the embedded cluster (kwok) cannot converge, and which providers can."""
    webhooks: Mapping[str, str] = field(default_factory=dict)
    """Admission webhook name -> the object (and chart) that installs it."""
    rendered_count: int = 0
    sync_sources: frozenset[str] = frozenset({"GitRepository/flux-system/flux-system"})
    """Refs of the sources that are the repo under test (the drill's own, and aliases)."""
    rendered: tuple[Obj, ...] = field(default=(), repr=False, compare=False)
    """Every object the walk rendered, with the Kustomization that applies it."""
    flux: flux_config.FluxSettings = field(default_factory=flux_config.FluxSettings)
    """The repo's own Flux settings (flux-system patches, FluxInstance, extra components)."""

    def controllers(self) -> tuple[str, ...]:
        """The Flux controllers this repo's kinds need (each kind's row in the kinds table)."""
        needed = {k.controller for o in self.rendered if (k := spec_of(o.doc)) is not None}
        needed |= {k.controller for o in self.objects if (k := o.kind_spec) is not None}
        return tuple(sorted(needed))

    @property
    def uses_helm(self) -> bool:
        """The repo defines HelmReleases, so helm-controller must run."""
        return any(o.kind == "HelmRelease" for o in self.objects)

    @property
    def uses_watcher(self) -> bool:
        """The repo defines ArtifactGenerators, so source-watcher must run."""
        return any(o.kind == "ArtifactGenerator" for o in self.objects)

    @property
    def kustomizations(self) -> tuple[FluxObject, ...]:
        return tuple(o for o in self.objects if o.kind == "Kustomization")

    @property
    def verdict(self) -> str:
        if any(p.severity == "invalid" for p in self.problems):
            return "invalid"
        return "unsupported" if self.problems else "ok"

    def raise_for_problems(self, *, unsupported: bool = False) -> None:
        """Raise the first invalid problem (and the first unsupported one if asked)."""
        for sev in ("invalid", "unsupported") if unsupported else ("invalid",):
            for p in self.problems:
                if p.severity == sev:
                    raise p.error or RepoError(p.message, file=p.file, obj=p.object, fix=p.fix)

    def expected(self) -> set[str]:
        """Refs the converge phase must see ready (the harness's root Kustomization included)."""
        return {o.ref for o in self.objects
                if o.kind in ("Kustomization", "GitRepository", "OCIRepository", "HelmRelease")}


def _rel(top: Path, p: Path) -> str:
    return os.path.relpath(p, top)


def _norm_path(top: Path, artifact: Artifact, raw: str | None) -> str | None:
    """spec.path relative to the repo top, or None if it points outside."""
    candidate = os.path.normpath(top / (raw or "./").lstrip("/"))
    rel = os.path.relpath(candidate, top)
    return None if rel.startswith("..") else rel


CLUSTER_SCOPED = frozenset({
    "Namespace", "CustomResourceDefinition", "StorageClass", "PriorityClass", "IngressClass",
    "PersistentVolume", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "APIService",
    "RuntimeClass", "CSIDriver", "VolumeSnapshotClass", "Node", "GatewayClass",
    "FluxReport"})


def is_cluster_scoped(kind: str) -> bool:
    """Cluster-scoped kinds (kustomize output leaves their namespace empty either way; this
    keeps `default` off them): the core ones, and the Cluster* convention of CRDs."""
    return kind in CLUSTER_SCOPED or kind.startswith("Cluster")


def _values(doc: Mapping[str, Any]) -> dict[str, str]:
    if doc.get("kind") == "ConfigMap":
        return {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
    out = {str(k): str(v) for k, v in (doc.get("stringData") or {}).items()}
    for k, v in (doc.get("data") or {}).items():
        try:
            out[str(k)] = base64.b64decode(str(v)).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    return out


class _Walk:
    def __init__(self, top: Path, artifact: Artifact) -> None:
        self.top = top
        self.artifact = artifact
        self.objects: dict[str, FluxObject] = {}
        self.rendered: list[Obj] = []
        self.produced: set[tuple[str, str, str]] = set()
        self.values: dict[tuple[str, str, str], dict[str, str] | None] = {}
        """Rendered ConfigMaps/Secrets (None when SOPS-encrypted: unknown offline)."""
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.remote_bases: dict[str, list[str]] = {}
        self.root_docs: list[dict[str, Any]] = []
        self.texts: dict[str, str] = {}
        self.derived: dict[str, Artifact] = {}
        """ExternalArtifacts made from the repo under test (ns/name -> its files)."""
        self.artifact_of: dict[str, str] = {}
        """Kustomization ref -> the derived artifact it builds from."""
        self.cleanup: list[Path] = []
        self.parsed: dict[str, list[dict[str, Any]]] = {}
        self.aliases: set[tuple[str, str]] = set()
        """Other names of the repo under test (see bootstrap.self_sync)."""
        self.unset_vars: dict[str, set[str]] = {}
        """Kustomization ref -> postBuild variables it uses with no value and no default
        offline: the keys its substituteFrom inputs must hold."""

    def artifact_for(self, ks: FluxObject) -> Artifact:
        return self.derived.get(self.artifact_of.get(ks.ref, ""), self.artifact)

    def external_artifact(self, ns: str, name: str) -> str | None:
        """Key of the artifact an ArtifactGenerator makes from the repo under test (copy
        rules applied, as source-watcher does), or None if it copies from other sources."""
        key = f"{ns}/{name}"
        if key in self.derived:
            return key
        for gen in self.objects.values():
            if gen.kind != "ArtifactGenerator" or gen.namespace != ns:
                continue
            spec = gen.spec
            aliases = {str(x.get("alias")): x for x in spec.get("sources") or []
                       if isinstance(x, Mapping)}
            for art in spec.get("artifacts") or []:
                if not isinstance(art, Mapping) or art.get("name") != name:
                    continue
                mine = {a for a, x in aliases.items()
                        if x.get("kind", "GitRepository") == "GitRepository" and
                        (x.get("namespace") or ns, x.get("name")) in
                        {(FLUX_NAMESPACE, SYNC_NAME), *self.aliases}}
                tmp = Path(tempfile.mkdtemp(prefix="drdrill-external-"))
                self.cleanup.append(tmp)
                for op in art.get("copy") or []:
                    src, dst = str(op.get("from", "")), str(op.get("to", ""))
                    alias, _, pattern = src.removeprefix("@").partition("/")
                    if alias not in mine:
                        return None
                    copy_into(self.artifact.dir, pattern, tmp, dst.removeprefix("@artifact/"))
                self.derived[key] = Artifact(tmp, self.artifact.kustomize)
                self.notes.append(f"ExternalArtifact {key} rendered from ArtifactGenerator "
                                  f"{gen.ref}'s copy rules over the repo under test")
                return key
        return None

    def origin(self, path: str, kind: str, name: str) -> str:
        """The repo file below `path` that defines kind/name (kustomize output forgets it)."""
        prefix = "" if path in ("", ".") else path.rstrip("/") + "/"
        for rel in sorted(self.artifact.files):
            if not rel.startswith(prefix) or not rel.endswith((".yaml", ".yml")):
                continue
            text = self.texts.get(rel)
            if text is None:
                text = self.texts[rel] = (self.top / rel).read_text(encoding="utf-8",
                                                                    errors="replace")
            if name not in text or kind not in text:
                continue
            docs = self.parsed.get(rel)
            if docs is None:
                try:
                    docs = yamlgo.manifests(yamlgo.parse_all(text))
                except yaml.YAMLError:
                    docs = []
                self.parsed[rel] = docs
            if any(d.get("kind") == kind and (d.get("metadata") or {}).get("name") == name
                   for d in docs):
                return rel
        return path

    def problem(self, err: RepoError, severity: Severity = "invalid") -> None:
        self.problems.append(Problem(severity, err.file, err.obj, err.message, err.fix, err))

    def substitution(self, ks: FluxObject) -> Substitution | None:
        post = ks.spec.get("postBuild")
        if not isinstance(post, Mapping):
            return None
        variables: dict[str, str] = {}
        complete = True
        for ref in post.get("substituteFrom") or []:
            if not isinstance(ref, Mapping):
                continue
            key = (str(ref.get("kind", "ConfigMap")), ks.namespace, str(ref.get("name")))
            data = self.values.get(key)
            if data is None:
                complete = complete and bool(ref.get("optional")) and key not in self.values
                continue
            variables.update(data)
        variables.update({str(k): str(v) for k, v in (post.get("substitute") or {}).items()})
        return Substitution(variables, complete)

    def level(self, items: list[tuple[FluxObject, Build]]) -> list[tuple[FluxObject, Build]]:
        by_art: dict[int, list[int]] = {}
        for i, (ks, _) in enumerate(items):
            by_art.setdefault(id(self.artifact_for(ks)), []).append(i)
        results: list[Any] = [None] * len(items)
        for idxs in by_art.values():
            art = self.artifact_for(items[idxs[0]][0])
            for i, r in zip(idxs, art.render_all([items[i][1] for i in idxs]), strict=True):
                results[i] = r
        queue: list[tuple[FluxObject, Build]] = []
        for (ks, build), res in zip(items, results, strict=True):
            art = self.artifact_for(ks)
            if res.error is not None:
                if res.remote:
                    bases = art.remote_bases(build.path)
                    self.remote_bases[ks.ref] = bases
                    self.notes.append(f"{ks.ref} builds remote bases ({', '.join(bases)}); "
                                      "preflight does not fetch them, so its objects are not "
                                      "inventoried")
                else:
                    self.problem(res.error)
                continue
            bases = art.remote_bases(build.path)
            if bases:
                self.remote_bases[ks.ref] = bases
            docs = res.docs
            sub = self.substitution(ks)
            if sub is not None:
                try:
                    docs, unset = substitute(docs, sub, owner=ks.ref, file=build.path)
                    self.unset_vars[ks.ref] = unset
                except RepoError as exc:
                    self.problem(exc)
                    continue
            if ks.source_file == ROOT_FILE:
                self.root_docs = docs
                self.aliases |= bootstrap.self_sync(docs, build.path)
            # Kustomizations last: the ArtifactGenerators they may build from are known then.
            for doc in sorted(docs, key=lambda d: d.get("kind") == "Kustomization"):
                queue.extend(self.fold(doc, ks, build))
        return queue

    def fold(self, doc: dict[str, Any], owner: FluxObject,
             build: Build) -> list[tuple[FluxObject, Build]]:
        kind = str(doc.get("kind", ""))
        meta = doc.get("metadata") or {}
        name = str(meta.get("name", ""))
        ns = "" if is_cluster_scoped(kind) else str(meta.get("namespace") or "default")
        self.produced.add((kind, ns, name))
        file = build.path
        k = spec_of(doc)
        if k is not None or kind in ("ValidatingWebhookConfiguration",
                                     "MutatingWebhookConfiguration"):
            file = self.origin(build.path, kind, name)
        self.rendered.append(Obj(doc, ns, owner.ref, file))
        if kind in ("ConfigMap", "Secret"):
            self.values[(kind, ns, name)] = None if "sops" in doc else _values(doc)
        if k is None:
            return []
        spec = doc.get("spec") or {}
        ref = f"{kind}/{ns}/{name}"
        if bootstrap.is_sync_object(doc, self.aliases):
            return []  # the sync objects of a `flux bootstrap` repo; the drill's own stand in
        deps = tuple(f"{d.get('namespace') or ns}/{d['name']}"
                     for d in (spec.get("dependsOn") or []) if isinstance(d, Mapping)
                     and d.get("name"))
        out: list[tuple[FluxObject, Build]] = []
        ks_path = None
        if kind == "Kustomization":
            src = spec.get("sourceRef") or {}
            src_ns = src.get("namespace") or ns
            if src.get("kind", "GitRepository") == "GitRepository" and \
                    (src_ns, src.get("name")) in {(FLUX_NAMESPACE, SYNC_NAME), *self.aliases}:
                rel = _norm_path(self.top, self.artifact, spec.get("path"))
                if rel is None:
                    self.problem(MissingPathError(
                        f"spec.path {spec.get('path')!r} points outside the repository",
                        file=file, obj=ref, fix="use a path relative to the repository root"))
                elif not self.artifact.exists(rel):
                    ignored = (self.top / rel).is_dir()
                    self.problem(MissingPathError(
                        f"spec.path {spec.get('path')!r} "
                        + ("is excluded by .sourceignore" if ignored else
                           "does not exist in the repository"), file=file, obj=ref,
                        fix="create that folder or correct spec.path" if not ignored else
                        "remove the folder from .sourceignore or correct spec.path"))
                else:
                    ks_path = rel
            elif src.get("kind") == "ExternalArtifact" and \
                    (art_key := self.external_artifact(src_ns, str(src.get("name")))):
                art = self.derived[art_key]
                rel = _norm_path(self.top, self.artifact, spec.get("path"))
                if rel is not None and art.exists(rel):
                    ks_path = rel
                    self.artifact_of[ref] = art_key
                else:  # a note, not a verdict: the copy rules are rebuilt, not run
                    self.notes.append(f"{ref}: spec.path {spec.get('path')!r} is not in "
                                      f"ExternalArtifact {art_key} as preflight rebuilds it "
                                      "from the ArtifactGenerator's copy rules; not rendered")
            else:
                self.notes.append(f"{ref} renders from {src.get('kind', 'GitRepository')}/"
                                  f"{src_ns}/{src.get('name')}, not the repo under test; not "
                                  "rendered in preflight")
        obj = FluxObject(kind, ns, name, file, deps, ks_path, spec, str(doc.get("apiVersion")),
                         owner.ref)
        if ref in self.objects and self.objects[ref].path is not None:
            return []
        self.objects[ref] = obj
        if ks_path is not None:
            out.append((obj, Build.of(ref, ks_path, spec)))
        return out


def analyze(top: Path, cluster_path: str, *, kustomize: Path | None, jobs: int = 4,
            collect: bool = False) -> RepoModel:
    """Walk the repo from `cluster_path` the way Flux would, or raise the first RepoError.
    With `collect`, problems are gathered in the model instead (preflight lists them all);
    a bad cluster path raises either way."""
    top = top.resolve()
    cluster_dir = top / cluster_path
    if cluster_dir.exists() and not cluster_dir.is_dir():
        raise MissingPathError(f"cluster path {cluster_path!r} is a file, not a folder",
                               file=str(top), obj=None,
                               fix=f"pass --cluster the folder, e.g. "
                                   f"{_rel(top, cluster_dir.parent)}")
    with Artifact(top, kustomize) as artifact:
        if not cluster_dir.is_dir() or not artifact.exists(_rel(top, cluster_dir)):
            candidates = bootstrap.discover_cluster_paths(top, artifact.files)
            raise MissingPathError(
                f"cluster path {cluster_path!r} does not exist", file=str(top), obj=None,
                fix=("pass --cluster one of: " + ", ".join(candidates)) if candidates
                else "pass --cluster the folder holding the cluster's Flux sync objects")
        walk = _Walk(top, artifact)
        root = FluxObject("Kustomization", FLUX_NAMESPACE, SYNC_NAME, ROOT_FILE,
                          path=_rel(top, cluster_dir),
                          api_version="kustomize.toolkit.fluxcd.io/v1")
        walk.objects[root.ref] = root
        walk.objects[f"GitRepository/{FLUX_NAMESPACE}/{SYNC_NAME}"] = FluxObject(
            "GitRepository", FLUX_NAMESPACE, SYNC_NAME, ROOT_FILE,
            api_version="source.toolkit.fluxcd.io/v1")
        level = [(root, Build(root.ref, _rel(top, cluster_dir)))]
        try:
            while level:
                level = walk.level(level)
        finally:
            for a in walk.derived.values():
                a.close()
            for d in walk.cleanup:
                shutil.rmtree(d, ignore_errors=True)
    # Bootstrap material (FluxInstance, flux-system patches) is often kept out of the sync.
    here = _rel(top, cluster_dir)
    every_file = bootstrap.own_files(top, source_files(top, sourceignore=False), here)
    all_instances = bootstrap.flux_instances(top, every_file)
    instances = [(f, i) for f, i in all_instances if bootstrap.syncs_path(i, here)
                 or f.startswith(here.rstrip("/") + "/") or here == "."]
    # A FluxInstance of another cluster sets that cluster's controller flags, not ours.
    others = {f for f, _ in all_instances} - {f for f, _ in instances}
    texts = [(rel, text) for rel in every_file if rel.endswith((".yaml", ".yml"))
             and rel not in others
             and "sops-age-secret" in (text := (top / rel).read_text(encoding="utf-8",
                                                                     errors="replace"))]
    _check_dependencies(walk)
    _check_kinds(walk)
    for f in apiversions.check((o.doc, o.file, o.ref) for o in walk.rendered):
        if f.severity == "invalid":
            walk.problem(RepoError(f.message, file=f.file, obj=f.obj, fix=f.fix))
        else:
            walk.notes.append(f"warning: {f.message} ({f.file}); {f.fix}")
    sync = bootstrap.local_run(walk.root_docs, [d for _, d in instances] +
                               [o.doc for o in walk.rendered if o.kind == "FluxInstance"],
                               walk.aliases)
    manual = _manual_inputs(walk, sync, texts)
    chart_of = {o.ref: _chart_name(o.spec) for o in walk.objects.values()
                if o.kind == "HelmRelease"}
    ext = inputs.external_dependencies(walk.rendered, walk.remote_bases, sync.url)
    limits = inputs.embedded_limits(walk.rendered, chart_of)
    webhooks: dict[str, str] = {}
    for o in walk.rendered:
        if o.kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            for w in o.doc.get("webhooks") or []:
                if isinstance(w, Mapping) and w.get("name"):
                    webhooks[str(w["name"])] = f"{o.ref} (applied by {o.owner})"
    for ref, chart in chart_of.items():  # webhooks a chart installs: named after the chart
        if chart in inputs.WEBHOOK_CHARTS:
            webhooks.setdefault(chart, f"{ref} (chart {chart})")
    first_of: dict[str, str] = {}
    for o in walk.rendered:
        if spec_of(o.doc) is not None:
            first_of.setdefault(o.kind, f"{o.ref} ({o.file})")
    flux = flux_config.read(top, every_file, here, kustomize=kustomize, instances=instances,
                            kinds=first_of)
    model = RepoModel(top, _rel(top, cluster_dir), tuple(walk.objects.values()),
                      tuple(manual), frozenset(walk.produced), tuple(sync.patches),
                      tuple(sync.changes), tuple(dict.fromkeys(walk.notes)),
                      tuple(walk.problems), tuple(ext), tuple(limits), webhooks,
                      len(walk.rendered), frozenset(
                          {f"GitRepository/{FLUX_NAMESPACE}/{SYNC_NAME}",
                           *(f"GitRepository/{ns}/{n}" for ns, n in walk.aliases)}),
                      tuple(walk.rendered), flux)
    if not collect:
        model.raise_for_problems()
    return model


def _chart_name(spec: Mapping[str, Any]) -> str:
    chart = ((spec.get("chart") or {}).get("spec") or {}).get("chart")
    if chart:
        return str(chart).rstrip("/").rsplit("/", 1)[-1]
    ref = spec.get("chartRef") or {}
    return str(ref.get("name", ""))


def _check_dependencies(walk: _Walk) -> None:
    by_kind: dict[str, dict[str, FluxObject]] = {}
    for o in walk.objects.values():
        if o.kind in ("Kustomization", "HelmRelease"):  # ResourceSet deps name any kind
            by_kind.setdefault(o.kind, {})[o.key] = o
    for kind, group in by_kind.items():
        for o in group.values():
            for dep in o.depends_on:
                if dep not in group:
                    walk.problem(UnknownDependencyError(
                        f"dependsOn names {kind} {dep}, which the repository does not define",
                        file=o.source_file, obj=o.ref,
                        fix=f"define {kind} {dep}, or remove it from dependsOn"))
        cycle = find_cycle({k: o.depends_on for k, o in group.items()})
        if cycle:
            walk.problem(DependencyCycleError([f"{kind}/{k}" for k in cycle],
                                              file=group[cycle[0]].source_file))


def _check_kinds(walk: _Walk) -> None:
    """Flux kinds whose controller the drill does not run: the apply would fail (no CRD)."""
    seen: set[str] = set()
    for o in walk.rendered:
        k = spec_of(o.doc)
        if k is None or k.controller in RUNNABLE_CONTROLLERS or k.kind in seen:
            continue
        seen.add(k.kind)
        count = sum(1 for x in walk.rendered if x.kind == k.kind and x.group == k.group)
        walk.problem(RepoError(
            f"{k.kind} ({k.group}) is served by {k.controller}, which drdrill does not run: "
            f"{o.owner} cannot apply {o.ref}" + (f" (and {count - 1} more)" if count > 1 else ""),
            file=o.file, obj=o.ref,
            fix=("no drdrill provider runs flux-operator yet (it is not pinned: its only "
                 "release on the Go module proxy, v0.59.0, needs Go 1.27); drill the paths its "
                 "FluxInstance and ResourceSets sync directly with --cluster, or move these "
                 "objects out of the Kustomization the drill applies"
                 if k.controller == "flux-operator" else
                 f"drill with --provider kind (where {k.controller} runs), or move the "
                 f"{k.kind} objects to a Kustomization the drill does not apply")),
            "unsupported")


def _manual_inputs(walk: _Walk, sync: bootstrap.SyncInfo,
                   texts: Iterable[tuple[str, str]]) -> list[ManualInput]:
    producers = inputs.runtime_producers(walk.rendered)
    owners: dict[tuple[str, str, str], set[str]] = {}
    for r in walk.rendered:
        owners.setdefault((r.kind, r.namespace, r.name), set()).add(r.owner)
    store_of: dict[tuple[str, str, str], str] = {}
    for o in walk.rendered:
        if o.group == inputs.ESO_GROUP and o.kind == "ExternalSecret":
            target = (o.spec.get("target") or {}).get("name") or o.name
            store_of[("Secret", o.namespace, str(target))] = \
                str((o.spec.get("secretStoreRef") or {}).get("name"))
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    flux_objs = [Obj({"apiVersion": o.api_version, "kind": o.kind,
                      "metadata": {"name": o.name, "namespace": o.namespace}, "spec": o.spec},
                     o.namespace, o.owner or "", o.source_file)
                 for o in walk.objects.values() if o.source_file != ROOT_FILE]
    flux_refs = {o.ref for o in flux_objs}
    others = [o for o in walk.rendered if o.ref not in flux_refs]
    for o in (*flux_objs, *others):
        for need in inputs.needs(o):
            key = (need.kind, need.namespace, need.name)
            status: inputs.Status = "optional" if need.optional else "missing"
            why = need.why
            if key in walk.produced:
                circular = need.why.startswith("secret-zero") and \
                    store_of.get(key) == o.name
                itself = need.field.startswith("spec.postBuild.substituteFrom") and \
                    owners.get(key) == {o.ref}
                if not circular and not itself:
                    continue
                why = (f"{need.why}; produced by an ExternalSecret through that very store"
                       if circular else
                       f"{need.why}; in Git, but applied only by {o.ref} itself, which cannot "
                       "build without it: a chicken-and-egg a real bootstrap breaks by "
                       "applying it by hand first")
            elif (by := inputs.producer_of(key, producers)) is not None:
                if need.why.startswith("secret-zero") and by.endswith(f"via {o.kind} {o.name})"):
                    why = (f"{need.why}; the ExternalSecret that would make it reads it through "
                           f"that very store: {by}")
                elif o.kind == "HelmRelease" and any(
                        by.endswith(f"via {k} {o.name})") for k in ("ClusterSecretStore",
                                                                     "SecretStore")):
                    # The release is the store's backend (1Password Connect): the ExternalSecret
                    # that makes its credentials needs it running first.
                    why = (f"{need.why}; made by an ExternalSecret through the store this release "
                           f"serves, which needs it running first: {by}")
                else:
                    status, why = "produced-at-runtime", f"produced at run time by {by}"
            entry = found.setdefault(key, {"by": [], "field": need.field, "automatable":
                                           need.automatable, "status": status, "why": why})
            entry["by"].append(need.by)
            if status == "missing":
                entry["status"] = "missing"
    for name, file in inputs.controller_sops_secrets(texts):
        key = ("Secret", FLUX_NAMESPACE, name)
        if key not in walk.produced:
            found.setdefault(key, {"by": [], "field": "kustomize-controller --sops-age-secret",
                                   "automatable": False, "status": "missing",
                                   "why": f"controller-wide SOPS age key (set in {file})"}
                             )["by"].append("kustomize-controller")
    replaced: set[tuple[str, str, str]] = set()
    git_key = ("Secret", FLUX_NAMESPACE, sync.secret or SYNC_NAME)
    private = bool(sync.secret) or str(sync.url or "").startswith(("ssh://", "git@"))
    replaced.add(git_key)
    found[git_key] = {"by": [f"GitRepository/{FLUX_NAMESPACE}/{SYNC_NAME}"],
                      "field": "spec.secretRef (Git credential of the sync source)",
                      "automatable": False, "status": "missing" if private else "optional",
                      "why": f"sync defined {sync.via}" + ("" if private else
                                                          "; needed only if the repository "
                                                          "is private")}
    sops_keys = _sops_key_patterns(walk)
    for v in found.values():
        if v["field"].startswith("spec.postBuild.substituteFrom"):
            v["keys"] = sorted(set().union(*(_vars_left_for(walk, b) for b in v["by"])))
        elif v["field"] in ("spec.decryption.secretRef", "kustomize-controller --sops-age-secret"):
            v["keys"] = sops_keys
    found.update(_namespaces_never_created(walk))
    return [ManualInput(k[0], k[1], k[2], tuple(dict.fromkeys(v["by"])), v["field"],
                        v["automatable"], v["status"], k in replaced, v["why"],
                        tuple(v.get("keys", ())))
            for k, v in sorted(found.items())]


BUILTIN_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease",
                                FLUX_NAMESPACE})
"""Namespaces every cluster has (flux-system: bootstrap makes it)."""


def _namespaces_never_created(walk: _Walk) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Namespaces the rendered objects live in that nothing in the repo creates (a Namespace
    object, a HelmRelease's createNamespace), e.g. made by a cloud's Flux extension: a manual
    step. Skipped when parts of the repo were not rendered (they may create it)."""
    unrendered = bool(walk.remote_bases) or any(
        "not rendered" in n or "not the repo under test" in n for n in walk.notes)
    if unrendered:
        return {}
    made = {o.name for o in walk.rendered if o.kind == "Namespace"}
    for o in walk.rendered:
        if o.kind == "HelmRelease" and (dig(o.spec, "install.createNamespace") is True):
            made.add(str(o.spec.get("targetNamespace") or o.namespace))
    users: dict[str, list[str]] = {}
    for o in walk.rendered:
        if o.namespace and o.namespace not in made and o.namespace not in BUILTIN_NAMESPACES:
            users.setdefault(o.namespace, []).append(o.ref)
    return {("Namespace", "", ns): {
        "by": refs[:5], "field": "metadata.namespace", "automatable": True, "status": "missing",
        "why": f"{len(refs)} object(s) live in it and nothing in the repository creates it "
               "(a platform or a bootstrap script must)"} for ns, refs in users.items()}


def _vars_left_for(walk: _Walk, ks_ref: str) -> set[str]:
    """The postBuild variables of `ks_ref` that only its one unknown substituteFrom source
    (the manual input) can hold: unset offline, and in none of its sources the repo renders.
    With two unknown sources, which holds what is not knowable: nothing is claimed."""
    ks = walk.objects.get(ks_ref)
    if ks is None:
        return set()
    left = set(walk.unset_vars.get(ks_ref, set()))
    unknown = 0
    for ref in (ks.spec.get("postBuild") or {}).get("substituteFrom") or []:
        if not isinstance(ref, Mapping):
            continue
        key = (str(ref.get("kind", "ConfigMap")), ks.namespace, str(ref.get("name")))
        data = walk.values.get(key)
        by_others = any((o.kind, o.namespace, o.name) == key and o.owner != ks_ref
                        for o in walk.rendered)
        if data is None or not by_others:  # unknown offline, or only applied by ks itself
            unknown += 1
        else:
            left -= set(data)
    return left if unknown == 1 else set()


def _sops_key_patterns(walk: _Walk) -> list[str]:
    """The key a SOPS decryption Secret must hold: `*.agekey` for age (kustomize-controller's
    convention), `*.asc` when the repo's encrypted files name only PGP recipients."""
    methods = {m for o in walk.rendered if isinstance(o.doc.get("sops"), Mapping)
               for m in ("age", "pgp") if o.doc["sops"].get(m)}
    return ["*.asc"] if methods == {"pgp"} else ["*.agekey"]


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(key: str) -> list[str] | None:
        colour[key] = 1
        stack.append(key)
        for dep in graph.get(key, ()):
            if colour.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if colour.get(dep) is None and dep in graph:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        colour[key] = 2
        return None

    for key in sorted(graph):
        if colour.get(key) is None:
            found = visit(key)
            if found:
                return found
    return None


__all__ = ["KINDS", "FluxObject", "Problem", "RepoModel", "analyze", "find_cycle"]
