"""Flux's chart sources pointed at the drill's mirror, as patches of the root Kustomization the
drill applies: each Kustomization that renders a HelmRepository or an OCIRepository gets a
patch of its own `spec.patches` that rewrites that source to `oci://<mirror>/<host>/<path>`
(an https HelmRepository becomes an OCI one: prefetch stored its charts as OCI). The commit
under test is not changed; every redirect is listed among the drill's local changes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.gitops.inputs import Obj
from harness.mirror.refs import mirror_prefix


@dataclass(frozen=True)
class Redirects:
    patches: tuple[dict[str, Any], ...]
    """Entries for the root Kustomization's spec.patches."""
    changes: tuple[str, ...]
    """One line per redirected source, for the report's local changes."""
    skipped: tuple[str, ...]
    """Sources that cannot be redirected this way (rendered two Kustomizations deep)."""


def _source_patch(o: Obj, mirror: str) -> tuple[dict[str, Any], str] | None:
    spec: Mapping[str, Any] = o.doc.get("spec") or {}
    url = str(spec.get("url") or "")
    if not url or "${" in url:
        return None
    if o.kind == "HelmRepository":
        ops: list[dict[str, Any]] = [
            {"op": "add", "path": "/spec/url", "value": f"oci://{mirror}/{mirror_prefix(url)}"},
            {"op": "add", "path": "/spec/type", "value": "oci"}]
    elif o.kind == "OCIRepository" and url.startswith("oci://"):
        ops = [{"op": "add", "path": "/spec/url",
                "value": f"oci://{mirror}/{mirror_prefix(url)}"}]
    else:
        return None
    ops.append({"op": "add", "path": "/spec/insecure", "value": True})  # the mirror is http
    patch = {"patch": json.dumps(ops), "target": {
        "group": "source.toolkit.fluxcd.io", "kind": o.kind, "name": o.name,
        **({"namespace": o.namespace} if o.namespace else {})}}
    return patch, f"{o.ref}: {url} -> {ops[0]['value']} (the drill's registry mirror)"


def redirects(rendered: Iterable[Obj], root_ref: str, mirror: str) -> Redirects:
    """Patches for the root Kustomization `root_ref` (`Kustomization/flux-system/flux-system`)
    that send every HelmRepository/OCIRepository the repo renders to `mirror` (host:port)."""
    objs = list(rendered)
    owner_of = {o.ref: o.owner for o in objs}
    has_patches = {o.ref: bool((o.doc.get("spec") or {}).get("patches")) for o in objs
                   if o.kind == "Kustomization"}
    root_patches: list[dict[str, Any]] = []
    per_child: dict[str, list[dict[str, Any]]] = {}
    changes: list[str] = []
    skipped: list[str] = []
    for o in objs:
        if o.kind not in ("HelmRepository", "OCIRepository"):
            continue
        made = _source_patch(o, mirror)
        if made is None:
            continue
        patch, change = made
        if o.owner == root_ref:
            root_patches.append(patch)
        elif owner_of.get(o.owner) == root_ref:
            per_child.setdefault(o.owner, []).append(patch)
        else:
            skipped.append(f"{o.ref} (rendered by {o.owner}, which the root does not render)")
            continue
        changes.append(change)
    for child, patches in sorted(per_child.items()):
        _, ns, name = child.split("/", 2)
        ops: list[dict[str, Any]]
        if has_patches.get(child):
            ops = [{"op": "add", "path": "/spec/patches/-", "value": p} for p in patches]
        else:
            ops = [{"op": "add", "path": "/spec/patches", "value": patches}]
        root_patches.append({"patch": json.dumps(ops), "target": {
            "group": "kustomize.toolkit.fluxcd.io", "kind": "Kustomization", "name": name,
            "namespace": ns}})
    return Redirects(tuple(root_patches), tuple(changes), tuple(skipped))
