"""What a recovery needs from outside Git: manual inputs (Secrets/ConfigMaps nothing in the repo
produces — secret-zero of secret stores, SOPS keys, Git credentials), inputs other controllers
produce at run time, and external dependencies (remotes that must be reachable)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from harness.errors import InputError, ManifestError
from harness.gitops import yamlgo
from harness.gitops.kinds import dig, lookup

if TYPE_CHECKING:
    from harness.gitops.model import RepoModel

Status = Literal["missing", "supplied", "produced-at-runtime", "optional"]
Key = tuple[str, str, str]
"""(kind, namespace, name); namespace '*' matches any."""


@dataclass(frozen=True)
class Obj:
    """A rendered object and where it came from."""

    doc: Mapping[str, Any]
    namespace: str
    owner: str
    """The Kustomization (ref) that applies it."""
    file: str

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name", ""))

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else \
            f"{self.kind}/{self.name}"

    @property
    def group(self) -> str:
        api = str(self.doc.get("apiVersion", ""))
        return api.split("/", 1)[0] if "/" in api else ""

    @property
    def spec(self) -> Mapping[str, Any]:
        s = self.doc.get("spec")
        return s if isinstance(s, Mapping) else {}


@dataclass(frozen=True)
class ManualInput:
    """A Secret or ConfigMap a recovery needs that nothing in Git produces."""

    kind: str
    namespace: str
    name: str
    needed_by: tuple[str, ...]
    field: str
    automatable: bool
    status: Status = "missing"
    replaced_in_drill: bool = False
    """True for inputs the drill makes unnecessary (the credential of the remote the local
    Git server stands in for). A real recovery still needs them."""
    why: str = ""
    """What it is (secret-zero of a store, SOPS key, ...), or who produces it at run time."""
    keys: tuple[str, ...] = ()
    """Keys it must hold (postBuild variables with no default; `*.agekey` for a SOPS key)."""

    @property
    def id(self) -> str:
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"

    @property
    def required(self) -> bool:
        return self.status == "missing" and not self.replaced_in_drill

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "namespace": self.namespace, "name": self.name,
                "needed_by": list(self.needed_by), "field": self.field,
                "automatable": self.automatable, "status": self.status,
                "replaced_in_drill": self.replaced_in_drill, "why": self.why,
                "keys": list(self.keys)}

    def lacking(self, doc: Mapping[str, Any]) -> list[str]:
        """The keys (or `*.agekey` patterns) a supplied manifest of this input does not hold."""
        have = [str(k) for part in ("data", "stringData", "binaryData")
                for k in (doc.get(part) or {})]
        return [k for k in self.keys if not any(fnmatch.fnmatchcase(h, k) for h in have)]

    def template(self) -> str:
        """A manifest to fill in, for the --inputs folder."""
        if self.kind == "Namespace":
            return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": self.name}}, sort_keys=False)
        body = {k.replace("*", "age" if k == "*.agekey" else "key"): "<value>"
                for k in self.keys} or {"<key>": "<value>"}
        return yaml.safe_dump({"apiVersion": "v1", "kind": self.kind, "metadata": {
            "name": self.name, "namespace": self.namespace},
            ("stringData" if self.kind == "Secret" else "data"): body}, sort_keys=False)


def lacking_keys(items: Iterable[ManualInput],
                 supplied: SuppliedInputs) -> list[tuple[ManualInput, list[str]]]:
    """Supplied inputs that lack keys the repo uses, with those keys."""
    by_key = {input_key(d): d for d in supplied.docs}
    out = []
    for i in items:
        doc = by_key.get((i.kind, i.namespace, i.name))
        if doc is not None and (gone := i.lacking(doc)):
            out.append((i, gone))
    return out


@dataclass(frozen=True)
class ExternalDependency:
    url: str
    kind: str
    """git | helm-repository | oci-registry | bucket | kustomize-remote-base |
    container-registry | api"""
    used_by: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "kind": self.kind, "used_by": list(self.used_by)}


# -- what references what ------------------------------------------------------------------

@dataclass(frozen=True)
class Need:
    kind: str
    namespace: str
    name: str
    by: str
    field: str
    optional: bool
    automatable: bool
    why: str = ""


ESO_GROUP = "external-secrets.io"
_STORES = ("SecretStore", "ClusterSecretStore")


def _secret_refs(node: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Secret references anywhere below a secret store's provider block: mappings with a
    `name` under a key that says secret (tokenSecretRef, secretRef.credentials, ...)."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            sub = f"{path}.{k}"
            if isinstance(v, Mapping) and isinstance(v.get("name"), str) and \
                    "secret" in sub.lower() and "serviceaccount" not in str(k).lower():
                yield sub, v
            else:
                yield from _secret_refs(v, sub)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _secret_refs(v, f"{path}[{i}]")


def needs(o: Obj) -> Iterator[Need]:
    spec = o.spec
    k = lookup(o.doc.get("apiVersion"), o.kind)
    if k is not None:
        for path in k.secret_refs:
            ref = dig(spec, path)
            if isinstance(ref, Mapping) and ref.get("name"):
                sops = path == "decryption.secretRef"
                yield Need("Secret", o.namespace, str(ref["name"]), o.ref, f"spec.{path}", False,
                           not sops and "kubeConfig" not in path,
                           "SOPS decryption key" if sops else "")
    if o.kind == "Kustomization" and k is not None:
        for i, ref in enumerate(dig(spec, "postBuild.substituteFrom") or []):
            if isinstance(ref, Mapping) and ref.get("name"):
                yield Need(str(ref.get("kind", "ConfigMap")), o.namespace, str(ref["name"]),
                           o.ref, f"spec.postBuild.substituteFrom[{i}]",
                           bool(ref.get("optional")), True, "postBuild variables")
    if o.kind == "HelmRelease" and k is not None:
        for i, ref in enumerate(spec.get("valuesFrom") or []):
            if isinstance(ref, Mapping) and ref.get("name"):
                yield Need(str(ref.get("kind", "ConfigMap")), o.namespace, str(ref["name"]),
                           o.ref, f"spec.valuesFrom[{i}]", bool(ref.get("optional")), True,
                           "Helm values")
    if o.kind == "HelmRelease" and k is not None:
        ns = str(spec.get("targetNamespace") or o.namespace)
        for path, name in values_secrets(spec.get("values"), "spec.values"):
            yield Need("Secret", ns, name, o.ref, path, False, True,
                       "named in the HelmRelease's values: the chart mounts or reads it")
    if o.group == ESO_GROUP and o.kind in _STORES:
        for path, ref in _secret_refs(spec.get("provider"), "spec.provider"):
            ns = str(ref.get("namespace") or o.namespace or "default")
            kind = "ConfigMap" if str(ref.get("type", "")).lower() == "configmap" else "Secret"
            yield Need(kind, ns, str(ref["name"]), o.ref, path, False, False,
                       f"secret-zero of the {o.kind} (the store's own credential)")


VALUES_SECRET_KEYS = frozenset({"existingSecret", "existingSecretName", "secretName",
                                "credentialsName"})
"""Keys by which common charts name a Secret the release needs but does not create
(`credentialsName`: 1Password Connect's chart, `connect.credentialsName`)."""


def values_secrets(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(values path, Secret name) for the Secret-name conventions of common charts:
    `existingSecret`, `existingSecretName`, `secretName` (not a TLS secret, which cert-manager
    makes from the Ingress), `envFrom[].secretRef` and app-template's `envFrom[].secret`,
    and `valueFrom.secretKeyRef`. Templated names (`{{ ... }}`) are left out."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            sub = f"{path}.{key}"
            if key in VALUES_SECRET_KEYS and isinstance(value, str):
                if value and "{{" not in value and not (key == "secretName" and
                                                        ".tls" in path.lower()):
                    yield sub, value
            elif key in ("secretRef", "secretKeyRef") and isinstance(value, Mapping) and \
                    isinstance(value.get("name"), str) and "{{" not in value["name"]:
                yield f"{sub}.name", value["name"]
            elif key == "secret" and isinstance(value, str) and path.rsplit(".", 1)[-1].startswith(
                    "envFrom[") and "{{" not in value:
                yield sub, value
            else:
                yield from values_secrets(value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from values_secrets(value, f"{path}[{i}]")


SOPS_FLAG = re.compile(r"--sops-age-secret[= ]+([A-Za-z0-9][-A-Za-z0-9.]*)")


def controller_sops_secrets(texts: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(secret name, file) of every `--sops-age-secret` set through patches or a FluxInstance."""
    out: list[tuple[str, str]] = []
    for file, text in texts:
        for m in SOPS_FLAG.finditer(text):
            out.append((m.group(1), file))
    return out


# -- produced at run time --------------------------------------------------------------------

REFLECTOR = "reflector.v1.k8s.emberstack.com/"
REPLICATOR = "replicator.v1.mittwald.de/replicate-to"


def runtime_producers(objs: Iterable[Obj]) -> dict[Key, str]:
    """Secrets/ConfigMaps other controllers create at run time, and who creates them."""
    out: dict[Key, str] = {}
    for o in objs:
        spec = o.spec
        ann = (o.doc.get("metadata") or {}).get("annotations") or {}
        if o.group == ESO_GROUP and o.kind in ("ExternalSecret", "ClusterExternalSecret"):
            target = dig(spec, "target.name") or dig(spec, "externalSecretSpec.target.name") \
                or o.name
            store = dig(spec, "secretStoreRef.name") or \
                dig(spec, "externalSecretSpec.secretStoreRef.name") or "?"
            skind = dig(spec, "secretStoreRef.kind") or "SecretStore"
            ns = o.namespace if o.kind == "ExternalSecret" else "*"
            out[("Secret", ns, str(target))] = f"external-secrets ({o.ref} via {skind} {store})"
        elif o.kind == "Certificate" and o.group == "cert-manager.io" and spec.get("secretName"):
            out[("Secret", o.namespace, str(spec["secretName"]))] = f"cert-manager ({o.ref})"
        elif o.kind == "SealedSecret" and o.group == "bitnami.com":
            out[("Secret", o.namespace, o.name)] = f"sealed-secrets ({o.ref})"
        elif o.group == "kyverno.io" and o.kind in ("ClusterPolicy", "Policy"):
            for rule in spec.get("rules") or []:
                gen = rule.get("generate") if isinstance(rule, Mapping) else None
                if not isinstance(gen, Mapping):
                    continue
                ns = str(gen.get("namespace") or "*")
                ns = "*" if "{{" in ns else ns
                name = str(gen.get("name") or "")
                if gen.get("kind") and name and "{{" not in name:
                    out[(str(gen["kind"]), ns, name)] = \
                        f"Kyverno generate ({o.ref}, rule {rule.get('name')})"
        if o.kind in ("Secret", "ConfigMap"):
            if str(ann.get(REFLECTOR + "reflection-auto-enabled", "")).lower() == "true":
                raw = str(ann.get(REFLECTOR + "reflection-auto-namespaces") or
                          ann.get(REFLECTOR + "reflection-allowed-namespaces") or "*")
                for ns in [n.strip() for n in raw.split(",") if n.strip()] or ["*"]:
                    ns = "*" if any(c in ns for c in "*[(.") else ns
                    out[(o.kind, ns, o.name)] = f"reflector (from {o.ref})"
            if ann.get(REPLICATOR):
                for ns in str(ann[REPLICATOR]).split(","):
                    ns = ns.strip()
                    ns = "*" if any(c in ns for c in "*[(.") else ns
                    out[(o.kind, ns, o.name)] = f"kubernetes-replicator (from {o.ref})"
    return out


def producer_of(key: Key, producers: Mapping[Key, str]) -> str | None:
    return producers.get(key) or producers.get((key[0], "*", key[2]))


# -- external dependencies -------------------------------------------------------------------

_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


def registry_of(image: str) -> str:
    """The registry host of an image reference, as the container runtime resolves it."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _containers(doc: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    spec: Any = doc.get("spec") or {}
    kind = doc.get("kind")
    if kind == "CronJob":
        spec = dig(spec, "jobTemplate.spec.template.spec") or {}
    elif kind != "Pod":
        spec = dig(spec, "template.spec") or {}
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or [] if isinstance(spec, Mapping) else []:
            if isinstance(c, Mapping):
                yield c


def _value_images(node: Any) -> Iterator[str]:
    """Image repositories named in Helm values (`repository:`/`image:` strings with a host)."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k in ("repository", "image") and isinstance(v, str) and "/" in v and \
                    "." in v.split("/", 1)[0] and " " not in v:
                yield v
            else:
                yield from _value_images(v)
    elif isinstance(node, list):
        for v in node:
            yield from _value_images(v)


def external_dependencies(objs: Iterable[Obj], remote_bases: Mapping[str, list[str]],
                          sync_url: str | None) -> list[ExternalDependency]:
    found: dict[tuple[str, str], list[str]] = {}

    def add(url: str, kind: str, by: str) -> None:
        users = found.setdefault((url, kind), [])
        if by not in users:
            users.append(by)

    if sync_url:
        add(sync_url, "git", "the sync source (repository under test)")
    for o in objs:
        k = lookup(o.doc.get("apiVersion"), o.kind)
        if k is not None and k.url_field:
            url = dig(o.spec, k.url_field)
            if isinstance(url, str) and url:
                kind = {"GitRepository": "git", "Bucket": "bucket",
                        "ImageRepository": "container-registry",
                        "ResourceSetInputProvider": "api"}.get(o.kind, "oci-registry")
                if o.kind == "HelmRepository":
                    kind = "oci-registry" if (o.spec.get("type") == "oci" or
                                              url.startswith("oci://")) else "helm-repository"
                if o.kind == "ImageRepository":
                    url = registry_of(url)
                add(url, kind, o.ref)
        if o.kind in _WORKLOADS:
            for c in _containers(o.doc):
                if isinstance(c.get("image"), str):
                    add(registry_of(c["image"]), "container-registry", o.ref)
        if o.kind == "HelmRelease" and k is not None:
            for image in _value_images(o.spec.get("values")):
                add(registry_of(image), "container-registry", o.ref)
    for owner, bases in remote_bases.items():
        for b in bases:
            add(b, "kustomize-remote-base", owner)
    order = {"git": 0, "helm-repository": 1, "oci-registry": 2, "bucket": 3,
             "kustomize-remote-base": 4, "api": 5, "container-registry": 6}
    return [ExternalDependency(url, kind, tuple(by))
            for (url, kind), by in sorted(found.items(), key=lambda kv: (order.get(kv[0][1], 9),
                                                                         kv[0][0]))]


# -- what the embedded cluster cannot run ----------------------------------------------------

WEBHOOK_CHARTS = {
    "cert-manager": "cert-manager's admission webhook",
    "kyverno": "Kyverno's admission webhooks",
    "external-secrets": "external-secrets' conversion/validation webhook",
    "ingress-nginx": "ingress-nginx's admission webhook",
    "kube-prometheus-stack": "prometheus-operator's admission webhook",
    "cloudnative-pg": "CloudNativePG's webhooks",
    "gatekeeper": "Gatekeeper's admission webhook",
    "opentelemetry-operator": "the OpenTelemetry operator's webhook",
    "trust-manager": "trust-manager's webhook",
    "istiod": "Istio's sidecar injector",
    "vault": "Vault's agent injector",
    "rook-ceph": "the Rook operator",
    "longhorn": "Longhorn's admission webhook",
    "metallb": "MetalLB's webhook",
    "cilium": "Cilium's agent (the CNI)",
    "volsync": "the VolSync operator",
    "snapshot-controller": "the snapshot validation webhook",
    "onepassword-connect": "1Password Connect (the store's backend)",
    "kubernetes-replicator": "kubernetes-replicator",
    "reflector": "reflector",
}


@dataclass(frozen=True)
class Limit:
    obj: str
    file: str
    why: str
    providers: tuple[str, ...] = ("kind", "k3d", "lab")

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.obj, "file": self.file, "why": self.why,
                "providers": list(self.providers)}


def embedded_limits(objs: Iterable[Obj], chart_of: Mapping[str, str]) -> list[Limit]:
    """Objects kwok cannot converge: its pods run no code, so webhooks, operators and hooks
    that need a running container never answer there."""
    out: list[Limit] = []
    for o in objs:
        if o.kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            names = [str(w.get("name")) for w in o.doc.get("webhooks") or []
                     if isinstance(w, Mapping)]
            out.append(Limit(o.ref, o.file, f"admission webhook {', '.join(names) or o.name}: "
                             "the API server calls a pod, and kwok's pods run no code"))
        elif o.kind == "HelmRelease":
            chart = chart_of.get(o.ref, "")
            what = WEBHOOK_CHARTS.get(chart)
            if what:
                out.append(Limit(o.ref, o.file, f"chart {chart}: {what} must run for its "
                                 "resources (and charts after it) to converge; kwok's pods run "
                                 "no code"))
    return out


@dataclass
class Inventory:
    manual_inputs: list[ManualInput] = field(default_factory=list)
    external_dependencies: list[ExternalDependency] = field(default_factory=list)
    limits: list[Limit] = field(default_factory=list)


# -- manual inputs supplied by the user (--inputs DIR) ---------------------------------------

@dataclass(frozen=True)
class SuppliedInputs:
    docs: tuple[dict[str, Any], ...]
    files: tuple[str, ...]

    def keys(self) -> set[Key]:
        return {input_key(d) for d in self.docs}


def input_key(doc: Mapping[str, Any]) -> Key:
    """(kind, namespace, name) of a supplied manifest; a Namespace has no namespace."""
    meta = doc.get("metadata") or {}
    kind = str(doc.get("kind"))
    ns = "" if kind == "Namespace" else str(meta.get("namespace") or "default")
    return kind, ns, str(meta.get("name"))


def load_inputs(directory: Path | None) -> SuppliedInputs:
    """The manifests of an --inputs folder (never copied into reports)."""
    if directory is None:
        return SuppliedInputs((), ())
    if not directory.is_dir():
        raise InputError(f"--inputs {directory} is not a folder",
                         fix="pass a folder of Kubernetes manifests (Secrets, ConfigMaps)")
    files = sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml")
                   and p.is_file() and not any(part.startswith(".")
                                               for part in p.relative_to(directory).parts))
    docs: list[dict[str, Any]] = []
    for f in files:
        try:
            docs.extend(yamlgo.load_file(f))
        except yaml.YAMLError as exc:
            raise ManifestError(yamlgo.problem(exc), file=f,
                                fix="fix the YAML syntax of the input manifest") from exc
    for d in docs:
        if not (d.get("metadata") or {}).get("name") or "kind" not in d:
            raise InputError("an input manifest lacks kind or metadata.name",
                             fix=f"check the manifests in {directory}")
    return SuppliedInputs(tuple(docs), tuple(str(f) for f in files))


def with_supplied(items: Iterable[ManualInput], supplied: SuppliedInputs) -> list[ManualInput]:
    """Mark the inputs the user supplied."""
    have = supplied.keys()
    return [replace(i, status="supplied") if (i.kind, i.namespace, i.name) in have else i
            for i in items]


def missing_inputs(items: Iterable[ManualInput], supplied: SuppliedInputs) -> list[ManualInput]:
    have = supplied.keys()
    return [i for i in items if i.required and (i.kind, i.namespace, i.name) not in have]


def check_inputs(model: RepoModel, supplied: SuppliedInputs, inputs_dir: Path | None) -> None:
    """Every required manual input must be supplied; name the missing ones and who needs them."""
    missing = missing_inputs(model.manual_inputs, supplied)
    if missing:
        lines = [f"{i.kind} {i.namespace}/{i.name}"
                 + (" (the SOPS decryption key, e.g. age.agekey)"
                    if i.field == "spec.decryption.secretRef" else "")
                 + f" (needed by {', '.join(i.needed_by)} via {i.field})" for i in missing]
        where = f"in {inputs_dir}" if inputs_dir else "with --inputs DIR"
        raise InputError(
            "manual inputs missing: " + "; ".join(lines),
            fix=f"supply each as a Kubernetes manifest {where} (they are applied before "
                "bootstrap and never copied into reports); templates:\n" +
                "---\n".join(i.template() for i in missing))
    short = lacking_keys(model.manual_inputs, supplied)
    if short:
        raise InputError(
            "manual inputs lack keys the repo uses: " + "; ".join(
                f"{i.kind} {i.namespace}/{i.name} has no {', '.join(keys)} (needed by "
                f"{', '.join(i.needed_by)} via {i.field})" for i, keys in short),
            fix=f"add those keys to the manifests in {inputs_dir}; templates:\n" +
                "---\n".join(i.template() for i, _ in short))
