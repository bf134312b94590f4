"""Preflight of the repository under test: render every Flux Kustomization path the way
kustomize-controller would, build the dependsOn graph, and list the manual inputs (Secrets and
ConfigMaps the Flux objects need that the repo does not produce). Fails in seconds with the
file and object named.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.command import Command, run
from harness.errors import (
    CommandError,
    DependencyCycleError,
    InputError,
    ManifestError,
    MissingPathError,
    RepoError,
    UnknownDependencyError,
)
from harness.flux import FLUX_NAMESPACE, SYNC_NAME
from harness.kube import load_yaml_docs, parse_yaml_all

log = logging.getLogger(__name__)

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KS_GROUP = "kustomize.toolkit.fluxcd.io"
SOURCE_GROUP = "source.toolkit.fluxcd.io"
HELM_GROUP = "helm.toolkit.fluxcd.io"
FLUX_KINDS = {
    (KS_GROUP, "Kustomization"),
    (SOURCE_GROUP, "GitRepository"),
    (SOURCE_GROUP, "OCIRepository"),
    (SOURCE_GROUP, "HelmRepository"),
    (SOURCE_GROUP, "HelmChart"),
    (SOURCE_GROUP, "Bucket"),
    (HELM_GROUP, "HelmRelease"),
}


def _group(obj: Mapping[str, Any]) -> str:
    return str(obj.get("apiVersion", "")).split("/")[0] if "/" in str(obj.get("apiVersion", "")) \
        else ""


@dataclass(frozen=True)
class FluxObject:
    kind: str
    namespace: str
    name: str
    source_file: str
    """The rendered path (repo-relative) whose output holds the object."""
    depends_on: tuple[str, ...] = ()
    path: str | None = None
    """Kustomization spec.path, normalised relative to the repo top."""
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ManualInput:
    """A Secret or ConfigMap a Flux object needs that the repo does not produce."""

    kind: str
    namespace: str
    name: str
    needed_by: tuple[str, ...]
    field: str
    automatable: bool
    replaced_in_drill: bool = False
    """True for inputs the drill makes unnecessary (the deploy key of a remote the local Git
    server stands in for). A real recovery still needs them."""

    @property
    def id(self) -> str:
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "namespace": self.namespace, "name": self.name,
                "needed_by": list(self.needed_by), "field": self.field,
                "automatable": self.automatable, "replaced_in_drill": self.replaced_in_drill}


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

    @property
    def uses_helm(self) -> bool:
        """The repo defines HelmReleases, so helm-controller must run."""
        return any(o.kind == "HelmRelease" for o in self.objects)

    @property
    def kustomizations(self) -> tuple[FluxObject, ...]:
        return tuple(o for o in self.objects if o.kind == "Kustomization")

    def expected(self) -> set[str]:
        """Refs the converge phase must see ready (the harness's root Kustomization included)."""
        return {o.ref for o in self.objects
                if o.kind in ("Kustomization", "GitRepository", "OCIRepository", "HelmRelease")}


# -- rendering -----------------------------------------------------------------------------

def _rel(top: Path, p: Path) -> str:
    return os.path.relpath(p, top)


def _has_kustomization(d: Path) -> bool:
    return any((d / f).is_file() for f in KUSTOMIZATION_FILES)


def _yaml_files(d: Path) -> Iterator[Path]:
    for p in sorted(d.rglob("*")):
        if p.suffix in (".yaml", ".yml") and p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(d).parts):
            yield p


def _find_invalid_yaml(d: Path) -> Path | None:
    for p in _yaml_files(d):
        try:
            parse_yaml_all(p.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            return p
    return None


class Renderer:
    """Builds a path like kustomize-controller: kustomize where there is a kustomization file,
    otherwise every manifest below it (recursing into folders that have their own)."""

    def __init__(self, top: Path, kustomize: Path | None) -> None:
        self.top = top
        self.kustomize = kustomize

    def render(self, path: Path, *, owner: str) -> list[dict[str, Any]]:
        try:
            return self._render(path, owner)
        except ManifestError as exc:
            if exc.obj:
                raise
            file = _rel(self.top, Path(exc.file)) if exc.file else _rel(self.top, path)
            raise ManifestError(exc.message, file=file, obj=owner, fix=exc.fix) from exc

    def _render(self, path: Path, owner: str) -> list[dict[str, Any]]:
        if _has_kustomization(path):
            return self._kustomize(path, owner)
        docs: list[dict[str, Any]] = []
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                docs.extend(self._render(child, owner))
            elif child.suffix in (".yaml", ".yml"):
                docs.extend(d for d in load_yaml_docs(child)
                            if "apiVersion" in d and "kind" in d)
        return docs

    def _kustomize(self, path: Path, owner: str) -> list[dict[str, Any]]:
        bad = _find_invalid_yaml(path)
        if bad is not None:
            list(load_yaml_docs(bad))  # raises ManifestError naming the file and the YAML error
        if self.kustomize is None:
            raise RepoError("kustomize is needed to render this path", file=_rel(self.top, path),
                            obj=owner, fix="run `drdrill tools ensure`")
        try:
            out = run(Command.of(str(self.kustomize), "build", "--load-restrictor",
                                 "LoadRestrictionsNone", str(path)).with_timeout(60)).stdout
        except CommandError as exc:
            msg = (exc.stderr or exc.stdout).strip().splitlines()
            raise ManifestError(f"kustomize cannot build {_rel(self.top, path)}: "
                                f"{msg[-1] if msg else exc}", file=_rel(self.top, path), obj=owner,
                                fix="run `kustomize build` on that folder and fix what it "
                                    "says") from exc
        try:
            return [d for d in parse_yaml_all(out) if isinstance(d, dict) and d]
        except yaml.YAMLError as exc:
            raise ManifestError(f"kustomize output is not valid YAML: {exc}",
                                file=_rel(self.top, path), obj=owner) from exc


# -- analysis ------------------------------------------------------------------------------

def _origin(top: Path, path: Path, kind: str, name: str) -> str:
    """The file under `path` that defines kind/name (kustomize output forgets it)."""
    for f in _yaml_files(path):
        text = f.read_text(encoding="utf-8", errors="replace")
        if name not in text or kind not in text:
            continue
        try:
            docs = parse_yaml_all(text)
        except yaml.YAMLError:
            continue
        for d in docs:
            if isinstance(d, dict) and d.get("kind") == kind and \
                    (d.get("metadata") or {}).get("name") == name:
                return _rel(top, f)
    return _rel(top, path)


def _norm_path(top: Path, raw: str | None, *, obj: str, file: str) -> Path:
    candidate = (top / (raw or "./")).resolve()
    if not candidate.is_relative_to(top.resolve()):
        raise MissingPathError(f"spec.path {raw!r} points outside the repository", file=file,
                               obj=obj, fix="use a path relative to the repository root")
    if not candidate.is_dir():
        raise MissingPathError(f"spec.path {raw!r} does not exist in the repository", file=file,
                               obj=obj, fix="create that folder or correct spec.path")
    return candidate


def cluster_candidates(top: Path) -> list[str]:
    """The repo-relative folders under clusters/ (the usual Flux layout), sorted."""
    clusters = top / "clusters"
    return sorted(_rel(top, p) for p in clusters.iterdir() if p.is_dir()) \
        if clusters.is_dir() else []


def analyze(top: Path, cluster_path: str, *, kustomize: Path | None) -> RepoModel:
    """Walk the repo from `cluster_path` the way Flux would, or raise a RepoError."""
    top = top.resolve()
    cluster_dir = top / cluster_path
    if cluster_dir.exists() and not cluster_dir.is_dir():
        raise MissingPathError(f"cluster path {cluster_path!r} is a file, not a folder",
                               file=str(top), obj=None,
                               fix=f"pass --cluster the folder, e.g. "
                                   f"{_rel(top, cluster_dir.parent)}")
    if not cluster_dir.is_dir():
        candidates = cluster_candidates(top)
        raise MissingPathError(
            f"cluster path {cluster_path!r} does not exist", file=str(top), obj=None,
            fix=("pass --cluster one of: " + ", ".join(candidates)) if candidates
            else "pass --cluster the folder holding the cluster's Flux sync objects")
    renderer = Renderer(top, kustomize)
    root_ref = f"Kustomization/{FLUX_NAMESPACE}/{SYNC_NAME}"
    objects: dict[str, FluxObject] = {
        root_ref: FluxObject("Kustomization", FLUX_NAMESPACE, SYNC_NAME, "(drdrill bootstrap)",
                             path=_rel(top, cluster_dir)),
        f"GitRepository/{FLUX_NAMESPACE}/{SYNC_NAME}": FluxObject(
            "GitRepository", FLUX_NAMESPACE, SYNC_NAME, "(drdrill bootstrap)"),
    }
    produced: set[tuple[str, str, str]] = set()
    rendered_by: dict[str, list[dict[str, Any]]] = {}
    queue: list[tuple[str, Path, str | None]] = [(root_ref, cluster_dir, None)]
    seen_paths: set[tuple[Path, str | None]] = set()
    notes: list[str] = []
    while queue:
        owner, path, target_ns = queue.pop(0)
        if (path, target_ns) in seen_paths:
            rendered_by[owner] = []
            continue
        seen_paths.add((path, target_ns))
        docs = renderer.render(path, owner=owner)
        rendered_by[owner] = docs
        for doc in docs:
            kind = str(doc.get("kind", ""))
            meta = doc.get("metadata") or {}
            name = str(meta.get("name", ""))
            ns = str(target_ns or meta.get("namespace") or "default")
            if kind == "Namespace":
                ns = ""
            produced.add((kind, ns, name))
            if (_group(doc), kind) not in FLUX_KINDS:
                continue
            spec = doc.get("spec") or {}
            ref = f"{kind}/{ns}/{name}"
            deps = tuple(
                f"{d.get('namespace') or ns}/{d['name']}"
                for d in (spec.get("dependsOn") or []) if isinstance(d, dict) and d.get("name"))
            if ref == root_ref or ref == f"GitRepository/{FLUX_NAMESPACE}/{SYNC_NAME}":
                continue  # the sync objects of a `flux bootstrap` repo; the drill's own stand in
            ks_path = None
            origin = _origin(top, path, kind, name)
            if kind == "Kustomization":
                src = spec.get("sourceRef") or {}
                src_ns = src.get("namespace") or ns
                if src.get("kind", "GitRepository") == "GitRepository" and \
                        src.get("name") == SYNC_NAME and src_ns == FLUX_NAMESPACE:
                    target = _norm_path(top, spec.get("path"), obj=ref, file=origin)
                    ks_path = _rel(top, target)
                    queue.append((ref, target, spec.get("targetNamespace")))
                else:
                    notes.append(f"{ref} renders from {src.get('kind')}/{src_ns}/"
                                 f"{src.get('name')}, not the repo under test; not rendered in "
                                 "preflight")
            objects[ref] = FluxObject(kind, ns, name, origin, deps, ks_path, spec)

    _check_dependencies(objects)
    sync_patches, local_changes, replaced = _local_run_patches(rendered_by.get(root_ref, []))
    inputs = _manual_inputs(objects.values(), produced, replaced)
    return RepoModel(top, _rel(top, cluster_dir), tuple(objects.values()), tuple(inputs),
                     frozenset(produced), tuple(sync_patches), tuple(local_changes), tuple(notes))


def _check_dependencies(objects: Mapping[str, FluxObject]) -> None:
    by_kind: dict[str, dict[str, FluxObject]] = {}
    for o in objects.values():
        by_kind.setdefault(o.kind, {})[o.key] = o
    for kind, group in by_kind.items():
        for o in group.values():
            for dep in o.depends_on:
                if dep not in group:
                    raise UnknownDependencyError(
                        f"dependsOn names {kind} {dep}, which the repository does not define",
                        file=o.source_file, obj=o.ref,
                        fix=f"define {kind} {dep}, or remove it from dependsOn")
        cycle = find_cycle({k: o.depends_on for k, o in group.items()})
        if cycle:
            raise DependencyCycleError([f"{kind}/{k}" for k in cycle],
                                       file=group[cycle[0]].source_file)


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


def _local_run_patches(root_docs: Iterable[Mapping[str, Any]],
                       ) -> tuple[list[dict[str, Any]], list[str], set[tuple[str, str, str]]]:
    """Patches for the drill's root Kustomization so a `flux bootstrap` repo runs locally."""
    patches: list[dict[str, Any]] = []
    changes: list[str] = []
    replaced: set[tuple[str, str, str]] = set()
    for doc in root_docs:
        meta = doc.get("metadata") or {}
        kind = doc.get("kind")
        if meta.get("name") == SYNC_NAME and meta.get("namespace") == FLUX_NAMESPACE and \
                (_group(doc), kind) in {(SOURCE_GROUP, "GitRepository"),
                                        (KS_GROUP, "Kustomization")}:
            patches.append({
                "patch": yaml.safe_dump({"apiVersion": doc["apiVersion"], "kind": kind,
                                         "metadata": {"name": SYNC_NAME,
                                                      "namespace": FLUX_NAMESPACE},
                                         "$patch": "delete"}),
                "target": {"kind": kind, "name": SYNC_NAME, "namespace": FLUX_NAMESPACE},
            })
            spec = doc.get("spec") or {}
            if kind == "GitRepository":
                changes.append(f"GitRepository {FLUX_NAMESPACE}/{SYNC_NAME} in the repo points at "
                               f"{spec.get('url')}; the drill serves the commit under test from a "
                               "local Git server instead (the repo's object is not applied)")
                secret = (spec.get("secretRef") or {}).get("name")
                if secret:
                    replaced.add(("Secret", FLUX_NAMESPACE, secret))
            else:
                changes.append(f"Kustomization {FLUX_NAMESPACE}/{SYNC_NAME} in the repo is "
                               "replaced "
                               "by the drill's own root Kustomization for the same path")
    return patches, changes, replaced


def _refs(o: FluxObject) -> Iterator[tuple[str, str, str, bool, bool]]:
    """(kind, name, field, optional, automatable) of each Secret/ConfigMap `o` references."""
    spec = o.spec
    def secret(path: list[str], field_name: str, automatable: bool,
               ) -> Iterator[tuple[str, str, str, bool, bool]]:
        node: Any = spec
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get("name"):
            yield "Secret", str(node["name"]), field_name, False, automatable
    if o.kind == "Kustomization":
        yield from secret(["decryption", "secretRef"], "spec.decryption.secretRef", False)
        yield from secret(["kubeConfig", "secretRef"], "spec.kubeConfig.secretRef", False)
        for i, ref in enumerate((spec.get("postBuild") or {}).get("substituteFrom") or []):
            if isinstance(ref, dict) and ref.get("name"):
                kind = str(ref.get("kind", "ConfigMap"))
                yield (kind, str(ref["name"]), f"spec.postBuild.substituteFrom[{i}]",
                       bool(ref.get("optional")), True)
    elif o.kind == "HelmRelease":
        yield from secret(["kubeConfig", "secretRef"], "spec.kubeConfig.secretRef", False)
        for i, ref in enumerate(spec.get("valuesFrom") or []):
            if isinstance(ref, dict) and ref.get("name"):
                yield (str(ref.get("kind", "ConfigMap")), str(ref["name"]),
                       f"spec.valuesFrom[{i}]", bool(ref.get("optional")), True)
    else:
        yield from secret(["secretRef"], "spec.secretRef", False)
        yield from secret(["certSecretRef"], "spec.certSecretRef", False)
        yield from secret(["verify", "secretRef"], "spec.verify.secretRef", False)
        yield from secret(["proxySecretRef"], "spec.proxySecretRef", False)


def _manual_inputs(objects: Iterable[FluxObject], produced: set[tuple[str, str, str]],
                   replaced: set[tuple[str, str, str]]) -> list[ManualInput]:
    found: dict[tuple[str, str, str], tuple[list[str], str, bool]] = {}
    for o in objects:
        for kind, name, field_name, optional, automatable in _refs(o):
            key = (kind, o.namespace, name)
            if optional or key in produced:
                continue
            found.setdefault(key, ([], field_name, automatable))[0].append(o.ref)
    for key in replaced:
        found.setdefault(key, (["GitRepository/flux-system/flux-system"],
                               "spec.secretRef (Git deploy key)", False))
    return [ManualInput(k[0], k[1], k[2], tuple(v[0]), v[1], v[2], k in replaced)
            for k, v in sorted(found.items())]


# -- manual inputs supplied by the user ------------------------------------------------------

@dataclass(frozen=True)
class SuppliedInputs:
    docs: tuple[dict[str, Any], ...]
    files: tuple[Path, ...]

    def keys(self) -> set[tuple[str, str, str]]:
        return {(str(d.get("kind")), str((d.get("metadata") or {}).get("namespace") or "default"),
                 str((d.get("metadata") or {}).get("name"))) for d in self.docs}


def load_inputs(directory: Path | None) -> SuppliedInputs:
    if directory is None:
        return SuppliedInputs((), ())
    if not directory.is_dir():
        raise InputError(f"--inputs {directory} is not a folder",
                         fix="pass a folder of Kubernetes manifests (Secrets, ConfigMaps)")
    files = tuple(_yaml_files(directory))
    docs = tuple(d for f in files for d in load_yaml_docs(f))
    for d in docs:
        if not (d.get("metadata") or {}).get("name") or "kind" not in d:
            raise InputError("an input manifest lacks kind or metadata.name",
                             fix=f"check the manifests in {directory}")
    return SuppliedInputs(docs, files)


def check_inputs(model: RepoModel, supplied: SuppliedInputs, inputs_dir: Path | None) -> None:
    """Every required manual input must be supplied; name the missing ones and who needs them."""
    have = supplied.keys()
    missing = [i for i in model.manual_inputs
               if not i.replaced_in_drill and (i.kind, i.namespace, i.name) not in have]
    if missing:
        lines = [f"{i.kind} {i.namespace}/{i.name}"
                 + (" (the SOPS decryption key, e.g. age.agekey)"
                    if i.field == "spec.decryption.secretRef" else "")
                 + f" (needed by {', '.join(i.needed_by)} via {i.field})" for i in missing]
        where = f"in {inputs_dir}" if inputs_dir else "with --inputs DIR"
        raise InputError(
            "manual inputs missing: " + "; ".join(lines),
            fix=f"supply each as a Kubernetes manifest {where} (they are applied before "
                "bootstrap and never copied into reports)")
