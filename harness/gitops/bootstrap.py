"""Repos made by `flux bootstrap` or installed through a FluxInstance carry their own sync
objects (a hosted remote, a credential). The drill serves the commit locally instead: this
module finds those objects, the cluster path they sync, and says what the drill changes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.gitops import yamlgo
from harness.gitops.kinds import group_of

FLUX_NAMESPACE = "flux-system"
SYNC_NAME = "flux-system"
SOURCE_GROUP = "source.toolkit.fluxcd.io"
KS_GROUP = "kustomize.toolkit.fluxcd.io"


@dataclass
class SyncInfo:
    url: str | None = None
    secret: str | None = None
    """The credential Secret of the sync source (flux-system namespace)."""
    via: str = ""
    """Where the sync is defined: gotk-sync, FluxInstance, or nothing in the repo."""
    patches: list[dict[str, Any]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


def self_sync(root_docs: Iterable[Mapping[str, Any]], cluster_path: str) -> set[tuple[str, str]]:
    """(namespace, name) of GitRepositories that are the repo under test under another name:
    the source of a Kustomization (applied from the cluster path) that syncs the cluster path
    itself or a folder above it, as repos bootstrapped with `kubectl apply -k` do."""
    out: set[tuple[str, str]] = set()
    for doc in root_docs:
        spec = doc.get("spec") or {}
        if doc.get("kind") != "Kustomization" or group_of(doc.get("apiVersion")) != KS_GROUP:
            continue
        path = os.path.normpath(str(spec.get("path") or ".").lstrip("/"))
        src = spec.get("sourceRef") or {}
        here = os.path.normpath(cluster_path)
        if (path == here or (path != "." and here.startswith(path + "/"))) and \
                src.get("kind", "GitRepository") == "GitRepository":
            ns = src.get("namespace") or (doc.get("metadata") or {}).get("namespace")
            out.add((str(ns or "default"), str(src.get("name"))))
    return out


def is_sync_object(doc: Mapping[str, Any],
                   aliases: Iterable[tuple[str, str]] = ()) -> bool:
    meta = doc.get("metadata") or {}
    names = {(FLUX_NAMESPACE, SYNC_NAME), *aliases}
    return (meta.get("namespace"), meta.get("name")) in names and \
        (group_of(doc.get("apiVersion")), doc.get("kind")) in {
            (SOURCE_GROUP, "GitRepository"), (SOURCE_GROUP, "OCIRepository"),
            (KS_GROUP, "Kustomization")}


def local_run(root_docs: Iterable[Mapping[str, Any]], instances: Iterable[Mapping[str, Any]],
              aliases: Iterable[tuple[str, str]] = ()) -> SyncInfo:
    """Patches for the drill's root Kustomization so the repo's own sync objects are not
    applied, and the Git credential a real recovery needs."""
    info = SyncInfo()
    aliases = set(aliases)
    for doc in root_docs:
        if not is_sync_object(doc, aliases):
            continue
        kind = str(doc.get("kind"))
        meta = doc.get("metadata") or {}
        name, ns = str(meta.get("name")), str(meta.get("namespace"))
        info.patches.append({
            "patch": yaml.safe_dump({"apiVersion": doc["apiVersion"], "kind": kind,
                                     "metadata": {"name": name, "namespace": ns},
                                     "$patch": "delete"}),
            "target": {"kind": kind, "name": name, "namespace": ns},
        })
        spec = doc.get("spec") or {}
        if kind in ("GitRepository", "OCIRepository"):
            info.url = info.url or spec.get("url")
            info.via = info.via or ("flux bootstrap (gotk-sync)" if name == SYNC_NAME else
                                    f"{kind} {ns}/{name} applied from the cluster path")
            info.secret = info.secret or (spec.get("secretRef") or {}).get("name")
            info.changes.append(f"{kind} {ns}/{name} in the repo points at "
                                f"{spec.get('url')}; the drill serves the commit under test from "
                                "a local Git server instead (the repo's object is not applied)")
        else:
            info.changes.append(f"Kustomization {ns}/{name} in the repo is "
                                "replaced by the drill's own root Kustomization for the same path")
    _patch_out_components(root_docs, info)
    for inst in instances:
        sync = (inst.get("spec") or {}).get("sync") or {}
        if not sync:
            continue
        name = str((inst.get("metadata") or {}).get("name"))
        info.url = info.url or sync.get("url")
        info.secret = info.secret or sync.get("pullSecret")
        info.via = info.via or f"FluxInstance {name}"
        info.changes.append(f"FluxInstance {name} syncs {sync.get('url')} path "
                            f"{sync.get('path')}; the drill installs the pinned Flux release "
                            "itself and syncs that path from a local Git server")
    if not info.via:
        info.via = "not in the repository (flux bootstrap or a FluxInstance creates it)"
    return info


def is_flux_component(doc: Mapping[str, Any]) -> bool:
    """An object of `flux install`/`flux bootstrap`'s gotk-components.yaml (by its labels)."""
    labels = (doc.get("metadata") or {}).get("labels") or {}
    return (labels.get("app.kubernetes.io/part-of") == "flux"
            and labels.get("app.kubernetes.io/instance") == FLUX_NAMESPACE)


def _patch_out_components(root_docs: Iterable[Mapping[str, Any]], info: SyncInfo) -> None:
    """The repo's gotk-components.yaml would replace the pinned controllers under test (and
    their CRDs) mid-drill: a delete patch per object, and one line saying so."""
    components = [doc for doc in root_docs if is_flux_component(doc)]
    for doc in components:
        meta = doc.get("metadata") or {}
        target: dict[str, Any] = {"kind": doc.get("kind"), "name": meta.get("name")}
        body: dict[str, Any] = {"apiVersion": doc.get("apiVersion"), "kind": doc.get("kind"),
                                "metadata": {"name": meta.get("name")}, "$patch": "delete"}
        if meta.get("namespace"):
            target["namespace"] = body["metadata"]["namespace"] = meta["namespace"]
        info.patches.append({"patch": yaml.safe_dump(body), "target": target})
    if components:
        versions = {str(((d.get("metadata") or {}).get("labels") or {}).get(
            "app.kubernetes.io/version", "")) for d in components} - {""}
        kinds = sorted({str(d.get("kind")) for d in components})
        info.changes.append(
            f"the repo's Flux components (gotk-components.yaml: {len(components)} objects of "
            f"Flux {', '.join(sorted(versions)) or 'unknown'}: {', '.join(kinds)}) are not "
            "applied; the drill installs the pinned Flux release itself, so the controllers "
            "under test are not replaced mid-drill")


def _docs(p: Path) -> list[dict[str, Any]]:
    try:
        return yamlgo.load_file(p)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return []


def flux_instances(top: Path, files: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    """(file, FluxInstance) for every FluxInstance written in the repo (Helm values aside)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for rel in files:
        if not rel.endswith((".yaml", ".yml")):
            continue
        p = top / rel
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "FluxInstance" not in text and "instance:" not in text:
            continue
        for d in _docs(p):
            if d.get("kind") == "FluxInstance":
                out.append((rel, d))
            elif d.get("kind") == "HelmRelease":
                # The flux-instance chart: the FluxInstance spec is its `instance` value.
                instance = ((d.get("spec") or {}).get("values") or {}).get("instance")
                if isinstance(instance, dict) and instance.get("sync"):
                    out.append((rel, {"kind": "FluxInstance", "metadata": {
                        "name": (d.get("metadata") or {}).get("name")}, "spec": instance}))
    return out


def own_files(top: Path, files: Iterable[str], cluster_path: str = ".") -> list[str]:
    """`files` less those of repositories nested in this one (a folder below the top with its
    own `clusters/` or `.git`, e.g. test fixtures, that does not hold the cluster under test):
    their bootstrap material is not ours."""
    mine = Path(os.path.normpath(cluster_path)).parts
    nested: dict[str, bool] = {
        "/".join(mine[:i]): False for i in range(1, len(mine) + 1)}  # kubernetes/clusters/x

    def foreign(rel: str) -> bool:
        parts = Path(rel).parts[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i])
            if folder not in nested:
                d = top / folder
                nested[folder] = (d / "clusters").is_dir() or (d / ".git").exists()
            if nested[folder]:
                return True
        return False

    return [rel for rel in files if not foreign(rel)]


def instance_path(raw: object) -> str:
    """A FluxInstance's `spec.sync.path` as a repo folder ("./clusters/x/" -> "clusters/x")."""
    return str(raw).strip("/").removeprefix("./") or "."


def syncs_path(instance: Mapping[str, Any], cluster_path: str) -> bool:
    """Whether a FluxInstance syncs the cluster path under test (or names no path at all)."""
    path = ((instance.get("spec") or {}).get("sync") or {}).get("path")
    if not path:
        return True
    want = os.path.normpath(instance_path(path))
    have = os.path.normpath(cluster_path)
    # The sync source may be a subfolder of this repo (an OCI artifact pushed from kubernetes/).
    return have == want or have.endswith("/" + want)


def cluster_candidates(top: Path) -> list[str]:
    """The repo-relative folders under clusters/ (the usual Flux layout), sorted."""
    clusters = top / "clusters"
    return sorted(os.path.relpath(p, top) for p in clusters.iterdir() if p.is_dir()) \
        if clusters.is_dir() else []


def discover_cluster_paths(top: Path, files: Iterable[str]) -> list[str]:
    """Cluster paths a repo syncs: clusters/*, gotk-sync paths, FluxInstance sync paths."""
    found: list[str] = list(cluster_candidates(top))
    for rel in files:
        if Path(rel).name == "gotk-sync.yaml":
            for d in _docs(top / rel):
                if d.get("kind") == "Kustomization" and (d.get("spec") or {}).get("path"):
                    found.append(str(d["spec"]["path"]).strip("./") or ".")
    for _, inst in flux_instances(top, files):
        path = ((inst.get("spec") or {}).get("sync") or {}).get("path")
        if path:
            found.append(instance_path(path))
    if not found:  # `kubectl apply -k <cluster>/flux-system` repos: the folder above it
        found = [str(Path(rel).parent.parent) for rel in files
                 if Path(rel).parent.name == FLUX_NAMESPACE and
                 Path(rel).name in ("kustomization.yaml", "kustomization.yml")]
    return sorted({os.path.normpath(p) for p in found if (top / p).is_dir()})
