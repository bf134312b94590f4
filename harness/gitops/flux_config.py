"""The repository's own Flux settings: the flux-system Kustomization's patches of
gotk-components.yaml, a FluxInstance's components / cluster profile / kustomize.patches, and
the extra components `flux bootstrap --components-extra` was told about. Patches are applied by
the pinned kustomize to the controllers' Deployments, as Flux applies them, and every flag the
repo changes is kept with the file and line that set it. Offline: no cluster code.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.command import Command, run
from harness.errors import CommandError
from harness.gitops import yamlgo

Origin = Literal["repo", "flux-default", "profile", "option", "scenario", "flux-install"]

DEFAULT_COMPONENTS = ("source-controller", "kustomize-controller", "helm-controller",
                      "notification-controller")
"""What `flux bootstrap` / a FluxInstance installs when told nothing else."""
EXTRA_COMPONENTS = ("image-reflector-controller", "image-automation-controller",
                    "source-watcher")
ALL_COMPONENTS = (*DEFAULT_COMPONENTS, *EXTRA_COMPONENTS)

FLUX_DEFAULTS: Mapping[str, Mapping[str, str]] = {
    # The binaries' own flag defaults at the pinned release (each controller's main.go).
    "source-controller": {"concurrent": "2", "requeue-dependency": "30s"},
    "kustomize-controller": {"concurrent": "4", "requeue-dependency": "30s"},
    "helm-controller": {"concurrent": "4", "requeue-dependency": "30s"},
    "notification-controller": {"concurrent": "4"},
    "image-reflector-controller": {"concurrent": "4", "requeue-dependency": "30s"},
    "image-automation-controller": {"concurrent": "4"},
    "source-watcher": {"concurrent": "10", "requeue-dependency": "5s"},
}
FAST_REQUEUE = "2s"
"""`--flux-profile fast`: drill-only tuning, never a default."""

DRILL_OWNED = frozenset({
    "metrics-addr", "health-addr", "storage-path", "storage-addr", "storage-adv-addr",
    "enable-leader-election", "events-addr", "log-encoding", "receiverAddr",
    "leader-election-lease-duration", "leader-election-renew-deadline",
    "leader-election-retry-period"})
"""Flags the drill sets itself (addresses, storage, leader election, log format): the repo's
values of these describe its cluster's network, not how Flux recovers."""

STOCK_ARGS: Mapping[str, tuple[str, ...]] = {
    # `flux install`'s Deployment args (fluxcd/flux2 manifests/bases at v2.9.2).
    c: ("--events-addr=http://notification-controller.flux-system.svc.cluster.local./",
        "--watch-all-namespaces=true", "--log-level=info", "--log-encoding=json",
        "--enable-leader-election",
        *(("--storage-path=/data",
           f"--storage-adv-addr={c}.$(RUNTIME_NAMESPACE).svc.cluster.local.")
          if c in ("source-controller", "source-watcher") else ()))
    for c in ALL_COMPONENTS}

# flux-operator v0.59.0's profiles (internal/builder/profiles.go), the parts that set flags:
# cluster.size, cluster.multitenant and the ExternalArtifact gate for source-watcher.
_KH = "(kustomize-controller|helm-controller)"
OPERATOR_SIZE: Mapping[str, Sequence[tuple[str, Sequence[str]]]] = {
    "small": ((_KH, ("--concurrent=5", "--requeue-dependency=10s")),
              ("(source-controller)", ("--helm-cache-max-size=10", "--helm-cache-ttl=720m",
                                       "--helm-cache-purge-interval=60m"))),
    "medium": ((_KH, ("--concurrent=10", "--requeue-dependency=5s")),
               ("(source-controller)", ("--helm-cache-max-size=50", "--helm-cache-ttl=720m",
                                        "--helm-cache-purge-interval=60m", "--concurrent=5"))),
    "large": ((_KH, ("--concurrent=20", "--requeue-dependency=5s")),
              ("(source-controller)", ("--helm-cache-max-size=100", "--helm-cache-ttl=720m",
                                       "--helm-cache-purge-interval=60m", "--concurrent=10"))),
}
WATCHER_GATE = "ExternalArtifact"


@dataclass(frozen=True)
class Setting:
    """One controller flag in use and where it came from."""

    controller: str
    name: str
    """The flag without dashes; a feature gate is `feature-gates/<Gate>`."""
    value: str
    source: str
    """A repo file and line, "Flux default", the drill profile, an option or a scenario."""
    origin: Origin = "repo"

    @property
    def gate(self) -> str | None:
        return self.name.split("/", 1)[1] if self.name.startswith("feature-gates/") else None

    @property
    def flag(self) -> str:
        """As on a command line (a gate alone: `--feature-gates=Gate=value`)."""
        if self.gate is not None:
            return f"--feature-gates={self.gate}={self.value}"
        return f"--{self.name}={self.value}" if self.value != "" else f"--{self.name}"

    def to_dict(self) -> dict[str, str]:
        return {"controller": self.controller, "flag": self.name, "value": self.value,
                "arg": self.flag, "source": self.source, "origin": self.origin}


@dataclass(frozen=True)
class FluxSettings:
    """The Flux a drill runs: the repo's own settings, Flux's defaults where it says nothing,
    and drill-only tuning only under an explicit profile. Frozen; `flags(controller)` is read
    by the one flag builder (harness.flux.settings)."""

    repo: tuple[Setting, ...] = ()
    components: tuple[str, ...] = DEFAULT_COMPONENTS
    components_source: str = "Flux default (flux bootstrap without --components-extra)"
    profile: str | None = None
    """repo: the repo's own settings and Flux's defaults; fast: drill-only tuning; None: not
    chosen (the runner takes Config.flux_profile)."""
    requeue_dependency: str | None = None
    """--requeue-dependency given on the command line (every controller that has it)."""
    concurrent: int | None = None
    git_interval: str = "1m"
    kustomization_interval: str = "10m"
    extra_flags: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """A scenario's own flags, by controller."""
    notes: tuple[str, ...] = ()
    """Settings the repo makes that the drill reads but does not reproduce, and why."""

    def with_repo(self, repo: FluxSettings) -> FluxSettings:
        """This drill's choices over the repo's own settings."""
        return replace(self, repo=repo.repo, components=repo.components,
                       components_source=repo.components_source, notes=repo.notes)

    def effective(self, controller: str) -> list[Setting]:
        merged: dict[str, Setting] = {}
        defaults = FLUX_DEFAULTS.get(controller, {})
        for name, value in defaults.items():
            merged[name] = Setting(controller, name, value, "Flux default", "flux-default")
        for s in self.repo:
            if s.controller == controller:
                merged[s.name] = s
        if self.profile == "fast" and "requeue-dependency" in defaults:
            merged["requeue-dependency"] = Setting(
                controller, "requeue-dependency", FAST_REQUEUE,
                "drill profile fast (--flux-profile fast)", "profile")
        if self.requeue_dependency and "requeue-dependency" in defaults:
            merged["requeue-dependency"] = Setting(controller, "requeue-dependency",
                                                   self.requeue_dependency,
                                                   "--requeue-dependency option", "option")
        if self.concurrent is not None and "concurrent" in defaults:
            merged["concurrent"] = Setting(controller, "concurrent", str(self.concurrent),
                                           "--concurrent option", "option")
        for flag in self.extra_flags.get(controller, ()):
            for s in parse_flag(controller, flag, "scenario", "scenario"):
                merged[s.name] = s
        return list(merged.values())

    def flags(self, controller: str) -> list[str]:
        """The flags to pass: every setting that is not the binary's own default, with the
        feature gates joined into one `--feature-gates` (the flag keeps only its last use)."""
        out: list[str] = []
        gates: list[str] = []
        for s in self.effective(controller):
            if s.origin == "flux-default":
                continue
            if s.gate is not None:
                gates.append(f"{s.gate}={s.value}")
            else:
                out.append(s.flag)
        if gates:
            out.append("--feature-gates=" + ",".join(gates))
        return out

    def gate(self, controller: str, gate: str) -> str | None:
        for s in self.effective(controller):
            if s.gate == gate:
                return s.value
        return None

    def describe(self, controllers: Iterable[str]) -> list[dict[str, str]]:
        """Every setting of every controller given, with its source (the report's list)."""
        return [s.to_dict() for c in controllers for s in self.effective(c)]


def parse_flag(controller: str, arg: str, source: str, origin: Origin) -> list[Setting]:
    """`--name=value` (or `--feature-gates=A=true,B=false`) as settings."""
    m = re.fullmatch(r"--?([A-Za-z0-9-]+)(?:=(.*))?", arg.strip())
    if not m:
        return []
    name, value = m.group(1), m.group(2) if m.group(2) is not None else ""
    if name == "feature-gates":
        out = []
        for part in value.split(","):
            gate, _, on = part.partition("=")
            if gate.strip():
                out.append(Setting(controller, f"feature-gates/{gate.strip()}",
                                   on.strip() or "true", source, origin))
        return out
    return [Setting(controller, name, value, source, origin)]


# -- reading the repo ----------------------------------------------------------------------------

@dataclass
class _Found:
    settings: dict[tuple[str, str], Setting] = field(default_factory=dict)
    components: tuple[str, ...] | None = None
    components_source: str = ""
    notes: list[str] = field(default_factory=list)

    def add(self, s: Setting) -> None:
        if s.name not in DRILL_OWNED:
            self.settings[(s.controller, s.name)] = s


def _line_of(top: Path, files: Sequence[str], needle: str) -> str | None:
    """`file:line` of the first line among `files` that contains `needle`."""
    for rel in files:
        try:
            lines = (top / rel).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for i, line in enumerate(lines, 1):
            if needle in line:
                return f"{rel}:{i}"
    return None


def _base_deployments(components: Iterable[str]) -> list[dict[str, Any]]:
    """Deployments shaped like `flux install`'s, for patches to apply to."""
    return [{
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": c, "namespace": "flux-system",
                     "labels": {"app.kubernetes.io/part-of": "flux",
                                "app.kubernetes.io/component": c,
                                "app.kubernetes.io/instance": "flux-system",
                                "control-plane": "controller"}},
        "spec": {"selector": {"matchLabels": {"app": c}}, "template": {
            "metadata": {"labels": {"app": c}},
            "spec": {"containers": [{"name": "manager", "image": f"fluxcd/{c}",
                                     "args": list(STOCK_ARGS[c])}]}}},
    } for c in components]


def _patched_args(kustomize: Path, base: Sequence[Mapping[str, Any]],
                  patch_fields: Mapping[str, Any], folder: Path | None) -> dict[str, list[str]]:
    """Deployment name -> container args after kustomize applies `patch_fields` (patches,
    patchesJson6902, patchesStrategicMerge) to `base`; `folder` holds the patch files."""
    tmp = Path(tempfile.mkdtemp(prefix="drdrill-fluxcfg-"))
    try:
        work = tmp / "k"
        if folder is not None:
            shutil.copytree(folder, work, symlinks=False, ignore_dangling_symlinks=True)
        else:
            work.mkdir()
        for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
            (work / name).unlink(missing_ok=True)
        (work / "drdrill-flux-base.yaml").write_text(yaml.safe_dump_all(list(base)))
        kust = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": ["drdrill-flux-base.yaml"], **patch_fields}
        (work / "kustomization.yaml").write_text(yaml.safe_dump(kust))
        out = run(Command.of(str(kustomize), "build", "--load-restrictor",
                             "LoadRestrictionsNone", str(work)).with_timeout(60)).stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args: dict[str, list[str]] = {}
    for doc in yamlgo.manifests(yamlgo.parse_all(out)):
        if doc.get("kind") != "Deployment":
            continue
        containers = (((doc.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers") or []
        if containers:
            args[str((doc.get("metadata") or {}).get("name"))] = [
                str(a) for a in containers[0].get("args") or []]
    return args


def _diff(found: _Found, controller: str, args: Sequence[str], stock: Sequence[str],
          where: Sequence[str], top: Path, fallback: str) -> None:
    """Each arg the patches added or changed, as a repo setting with its file and line."""
    for arg in args:
        if arg in stock:
            continue
        source = _line_of(top, where, arg) or _line_of(top, where, arg.split("=", 1)[0]) \
            or fallback
        for s in parse_flag(controller, arg, source, "repo"):
            found.add(s)


PATCH_FIELDS = ("patches", "patchesJson6902", "patchesStrategicMerge")


def _gotk_folder(top: Path, files: Sequence[str], cluster_path: str) -> str | None:
    """The folder under the cluster path holding gotk-components.yaml (flux bootstrap)."""
    prefix = "" if cluster_path in ("", ".") else cluster_path.rstrip("/") + "/"
    hits = sorted((rel for rel in files if rel.startswith(prefix)
                   and Path(rel).name == "gotk-components.yaml"), key=len)
    return str(Path(hits[0]).parent) if hits else None


def _gotk(found: _Found, top: Path, files: Sequence[str], cluster_path: str,
          kustomize: Path, inferred: Mapping[str, str]) -> None:
    folder = _gotk_folder(top, files, cluster_path)
    if folder is None:
        return
    comp_file = f"{folder}/gotk-components.yaml"
    try:
        docs = yamlgo.load_file(top / comp_file)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        docs = []
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if deployments:
        names = [str((d.get("metadata") or {}).get("name")) for d in deployments]
        found.components = tuple(n for n in ALL_COMPONENTS if n in names)
        found.components_source = f"{comp_file} (its Deployments)"
        base: list[dict[str, Any]] = deployments
    else:
        # A placeholder (the example repos): what `flux bootstrap` will write, with the extra
        # components the repo's own kinds need.
        found.components = (*DEFAULT_COMPONENTS, *inferred)
        found.components_source = (
            f"{comp_file} is a placeholder: flux bootstrap's defaults" +
            "".join(f" + {c} (--components-extra: {why})" for c, why in inferred.items()))
        base = _base_deployments(found.components)
    kust_rel = next((f"{folder}/{n}" for n in ("kustomization.yaml", "kustomization.yml")
                     if f"{folder}/{n}" in set(files)), None)
    patch_fields: dict[str, Any] = {}
    if kust_rel is not None:
        try:
            kust = yamlgo.load_file(top / kust_rel)
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            kust = []
        for doc in kust[:1]:
            patch_fields = {k: doc[k] for k in PATCH_FIELDS if doc.get(k)}
    where = [p for p in (kust_rel, comp_file) if p] + sorted(
        rel for rel in files if rel.startswith(folder + "/") and rel not in (kust_rel, comp_file))
    try:
        args = _patched_args(kustomize, base, patch_fields, top / folder)
    except CommandError as exc:
        found.notes.append(f"the flux-system patches in {kust_rel} could not be applied to the "
                           f"controllers ({str(exc).splitlines()[0][:200]}); Flux's defaults "
                           "are used")
        return
    for c, a in args.items():
        if c in STOCK_ARGS:
            _diff(found, c, a, STOCK_ARGS[c], where, top, kust_rel or comp_file)
    if "source-watcher" in found.components:
        _watcher_gate(found, comp_file)


def _watcher_gate(found: _Found, why: str) -> None:
    """`flux install --components-extra=source-watcher` and flux-operator both turn on the
    ExternalArtifact gate of kustomize- and helm-controller."""
    for c in ("kustomize-controller", "helm-controller"):
        key = (c, f"feature-gates/{WATCHER_GATE}")
        if key not in found.settings:
            found.settings[key] = Setting(
                c, key[1], "true", f"what flux bootstrap and flux-operator set with "
                f"source-watcher ({why})", "flux-install")


def _instance(found: _Found, top: Path, rel: str, inst: Mapping[str, Any],
              kustomize: Path) -> None:
    spec = inst.get("spec") or {}
    name = str((inst.get("metadata") or {}).get("name"))
    comps = spec.get("components")
    here = [rel]
    if isinstance(comps, list) and comps:
        found.components = tuple(str(c) for c in comps if str(c) in ALL_COMPONENTS)
        found.components_source = (f"FluxInstance {name} spec.components "
                                   f"({_line_of(top, here, 'components:') or rel})")
    else:
        found.components = DEFAULT_COMPONENTS
        found.components_source = f"FluxInstance {name}: flux-operator's default components"
    cluster = spec.get("cluster") or {}
    patches: list[dict[str, Any]] = []
    origin: dict[tuple[str, str], str] = {}
    """(target name regex, arg) -> the FluxInstance field that set it."""
    size = str(cluster.get("size") or "")
    for target, args in OPERATOR_SIZE.get(size, ()):
        patches.append(_add_args(target, args))
        for a in args:
            origin.setdefault((target, a), f"FluxInstance {name} spec.cluster.size={size} "
                              f"({_line_of(top, here, 'size:') or rel}; flux-operator profile)")
    if cluster.get("multitenant"):
        sa = str(cluster.get("tenantDefaultServiceAccount") or "default")
        src = (f"FluxInstance {name} spec.cluster.multitenant "
               f"({_line_of(top, here, 'multitenant:') or rel}; flux-operator profile)")
        mt = (("(kustomize-controller|helm-controller|notification-controller|"
               "image-reflector-controller|image-automation-controller|source-watcher)",
               ("--no-cross-namespace-refs=true",)),
              ("(kustomize-controller)", ("--no-remote-bases=true",)),
              (_KH, (f"--default-service-account={sa}",)))
        for target, args in mt:
            patches.append(_add_args(target, args))
            for a in args:
                origin.setdefault((target, a), src)
    own = ((spec.get("kustomize") or {}).get("patches")) or []
    patches.extend(dict(p) for p in own if isinstance(p, Mapping))
    sharding = spec.get("sharding") or {}
    if sharding.get("shards"):
        found.notes.append(
            f"FluxInstance {name} shards the controllers ({', '.join(map(str, sharding['shards']))}"
            f" by label {sharding.get('key', 'sharding.fluxcd.io/key')}): the drill runs one "
            "controller of each kind, which reconciles every shard's objects")
    dist = (spec.get("distribution") or {}).get("version")
    if dist:
        found.notes.append(f"FluxInstance {name} asks for Flux {dist}; the drill runs the pinned "
                           "release (see versions)")
    if not patches:
        if "source-watcher" in found.components:
            _watcher_gate(found, found.components_source)
        return
    try:
        patched = _patched_args(kustomize, _base_deployments(found.components),
                                {"patches": patches}, None)
    except CommandError as exc:
        found.notes.append(f"FluxInstance {name}'s kustomize.patches could not be applied "
                           f"({str(exc).splitlines()[0][:200]}); Flux's defaults are used")
        return
    for c, c_args in patched.items():
        for arg in c_args:
            if arg in STOCK_ARGS[c]:
                continue
            line = _line_of(top, here, arg) or _line_of(top, here, arg.split("=")[0]) or rel
            src = next((v for (target, a), v in origin.items() if a == arg and
                        re.fullmatch(target, c)),
                       f"FluxInstance {name} spec.kustomize.patches ({line})")
            for s in parse_flag(c, arg, src, "repo"):
                found.add(s)
    if "source-watcher" in found.components:
        _watcher_gate(found, found.components_source)


def _add_args(target: str, args: Iterable[str]) -> dict[str, Any]:
    ops = [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": a}
           for a in args]
    return {"target": {"kind": "Deployment", "name": target}, "patch": yaml.safe_dump(ops)}


def read(top: Path, files: Sequence[str], cluster_path: str, *, kustomize: Path | None,
         instances: Sequence[tuple[str, Mapping[str, Any]]],
         kinds: Mapping[str, str]) -> FluxSettings:
    """The repo's Flux settings for the cluster under test. `kinds`: Flux kind -> the object
    that uses it first (which extra components the repo needs, e.g. ArtifactGenerator)."""
    found = _Found()
    inferred = {c: f"{ref} needs it" for c, ref in (
        ("source-watcher", kinds.get("ArtifactGenerator")),
        ("image-reflector-controller", kinds.get("ImageRepository") or kinds.get("ImagePolicy")),
        ("image-automation-controller", kinds.get("ImageUpdateAutomation"))) if ref}
    if kustomize is not None:
        if instances:
            rel, inst = instances[0]
            _instance(found, top, rel, inst, kustomize)
        else:
            _gotk(found, top, files, cluster_path, kustomize, inferred)
    components = found.components or DEFAULT_COMPONENTS
    source = found.components_source
    missing = [c for c in inferred if c not in components]
    if found.components is None:
        components = (*DEFAULT_COMPONENTS, *inferred)
        source = ("not in the repository: flux bootstrap's defaults" +
                  "".join(f" + {c} (--components-extra: {why})" for c, why in inferred.items()))
        if "source-watcher" in inferred:
            _watcher_gate(found, inferred["source-watcher"])
    elif missing:
        found.notes.append(f"the repo's Flux ({source}) lacks {', '.join(missing)}, which "
                           f"{'; '.join(inferred[c] for c in missing)}: its objects would not "
                           "reconcile in the real cluster either")
    return FluxSettings(repo=tuple(sorted(found.settings.values(),
                                          key=lambda s: (s.controller, s.name))),
                        components=tuple(components), components_source=source,
                        notes=tuple(found.notes))


__all__ = ["FAST_REQUEUE", "FLUX_DEFAULTS", "FluxSettings", "Setting", "parse_flag", "read"]
