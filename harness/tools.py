"""Pinned binaries: find each at its manifest version (folder, PATH, cache) or build it with Go.

Resolution order, per tool: `Config.tools_dir`, PATH (only at the pinned version), the cache
under `Config.tools_cache`, then a `go build` from the Go module proxy into that cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

from harness import gobuild
from harness.command import Command, run
from harness.config import Config
from harness.errors import (
    CommandError,
    HarnessError,
    ToolBuildError,
    ToolNotFoundError,
    ToolVersionError,
)

log = logging.getLogger(__name__)

Source = Literal["dir", "path", "cache", "built"]
Progress = Callable[[str], None]

TOOL_NAMES: tuple[str, ...] = (
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
    "source-controller", "kustomize-controller", "helm-controller", "source-watcher",
    "notification-controller", "image-reflector-controller", "image-automation-controller",
    "kustomize", "kubectl", "sops",
)
"""What `drdrill tools ensure` resolves by default (the embedded provider and Flux)."""
KIND_TOOLS: tuple[str, ...] = (
    "kind", "kubelet", "kubeadm", "kube-proxy", "kubectl", "crictl", "coredns",
    "local-path-provisioner", "etcd", "kube-apiserver", "kube-controller-manager",
    "kube-scheduler",
)
"""The kind CLI and what its node image is made of; only the kind provider resolves these."""
BENCH_TOOLS: tuple[str, ...] = ("flux",)
"""Only the benchmark's peers need these; `tools ensure` builds them only when named."""
ALL_TOOL_NAMES: tuple[str, ...] = tuple(dict.fromkeys(TOOL_NAMES + KIND_TOOLS + BENCH_TOOLS))
EMBEDDED_TOOLS: tuple[str, ...] = (
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
)
FLUX_TOOLS: tuple[str, ...] = ("source-controller", "kustomize-controller")
HELM_TOOLS: tuple[str, ...] = ("helm-controller",)
"""Resolved only for repos that define HelmReleases."""
WATCHER_TOOLS: tuple[str, ...] = ("source-watcher",)
"""Resolved only for repos that define ArtifactGenerators."""
NOTIFICATION_TOOLS: tuple[str, ...] = ("notification-controller",)
"""Resolved only for repos that define Alerts, Providers or Receivers."""
IMAGE_TOOLS: tuple[str, ...] = ("image-reflector-controller", "image-automation-controller")
"""Resolved only for repos that define image automation kinds."""

VERSION_CHECK_TIMEOUT_S = 20.0
FLUX_CRDS_DIR = "flux-crds"


# --- the manifest ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ToolSpec:
    """One pinned binary, as `harness/tools.toml` describes it."""

    name: str
    version: str
    family: str
    module: str
    package: str
    version_args: tuple[str, ...]
    version_regex: str | None
    expect_regex: str | None
    version_from: Literal["output", "buildinfo"]
    ldflags: tuple[str, ...]


@dataclass(frozen=True)
class FamilySpec:
    """A wrapper module from which one `go build` makes several tools."""

    name: str
    go: str
    require: tuple[tuple[str, str], ...]
    replace: tuple[str, ...]
    overlay: tuple[gobuild.Overlay, ...] = ()


@dataclass(frozen=True)
class CrdSource:
    module: str
    version: str
    dir: str


@dataclass(frozen=True)
class Manifest:
    tools: Mapping[str, ToolSpec]
    families: Mapping[str, FamilySpec]
    """In build order."""
    flux_crds_version: str
    flux_crds: tuple[CrdSource, ...]
    flux_release: str = ""
    """The one Flux release whose controllers are pinned together, e.g. "v2.9.2"."""

    def family_tools(self, family: str) -> tuple[ToolSpec, ...]:
        return tuple(t for t in self.tools.values() if t.family == family)

    def family_version(self, family: str) -> str:
        return self.family_tools(family)[0].version

    def build_plan(self, family: str) -> gobuild.BuildPlan:
        fam = self.families[family]
        tools = self.family_tools(family)
        ldflags: list[str] = []
        for tool in tools:
            ldflags += [f for f in tool.ldflags if f not in ldflags]
        return gobuild.BuildPlan(
            family=family, version=self.family_version(family), go_directive=fam.go,
            require=fam.require, replace=fam.replace,
            packages=tuple(t.package for t in tools), names=tuple(t.name for t in tools),
            ldflags=tuple(ldflags), overlay=fam.overlay)


class ManifestInvalid(HarnessError):
    """harness/tools.toml does not say what drdrill needs (a packaging or editing mistake)."""


def _strs(raw: object, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ManifestInvalid(f"tools.toml: {where} must be a list of strings")
    return tuple(cast(list[str], raw))


def parse_manifest(data: Mapping[str, Any]) -> Manifest:
    """Validate the parsed TOML and turn it into frozen specs."""
    families: dict[str, FamilySpec] = {}
    for name, fam in data.get("families", {}).items():
        require = []
        for line in _strs(fam.get("require", []), f"families.{name}.require"):
            mod, _, ver = line.partition(" ")
            if not ver.startswith("v"):
                raise ManifestInvalid(f"tools.toml: families.{name}.require {line!r} is not "
                                      "'module vX.Y.Z'")
            require.append((mod, ver.strip()))
        replace = _strs(fam.get("replace", []), f"families.{name}.replace")
        if any("=>" not in r for r in replace):
            raise ManifestInvalid(f"tools.toml: families.{name}.replace needs 'old => new v'")
        overlay = []
        for entry in fam.get("overlay", []):
            required = dict(require)
            try:
                module, file, with_ = str(entry["module"]), str(entry["file"]), str(entry["with"])
            except (KeyError, TypeError) as exc:
                raise ManifestInvalid(f"tools.toml: families.{name}.overlay entries need "
                                      "module, file and with") from exc
            if module not in required:
                raise ManifestInvalid(f"tools.toml: families.{name}.overlay names {module}, "
                                      "which the family does not require")
            replacement = resources.files("harness").joinpath(with_)
            if not replacement.is_file():
                raise ManifestInvalid(f"tools.toml: families.{name}.overlay file {with_!r} is "
                                      "not in the harness package")
            overlay.append(gobuild.Overlay(module, required[module], file,
                                           replacement.read_text(encoding="utf-8")))
        families[name] = FamilySpec(name, str(fam["go"]), tuple(require), replace,
                                    tuple(overlay))
    tools: dict[str, ToolSpec] = {}
    for name, raw in data.get("tools", {}).items():
        try:
            version_from = raw.get("version_from", "output")
            if version_from not in ("output", "buildinfo"):
                raise ManifestInvalid(f"tools.toml: tools.{name}.version_from={version_from!r}")
            spec = ToolSpec(
                name=name, version=str(raw["version"]), family=str(raw["family"]),
                module=str(raw["module"]), package=str(raw["package"]),
                version_args=_strs(raw["version_args"], f"tools.{name}.version_args"),
                version_regex=raw.get("version_regex"), expect_regex=raw.get("expect_regex"),
                version_from=version_from,
                ldflags=_strs(raw.get("ldflags", []), f"tools.{name}.ldflags"))
        except KeyError as exc:
            raise ManifestInvalid(f"tools.toml: tools.{name} lacks {exc.args[0]!r}") from exc
        if spec.family not in families:
            raise ManifestInvalid(f"tools.toml: tools.{name} names unknown family {spec.family!r}")
        if spec.version_from == "output" and not spec.version_regex:
            raise ManifestInvalid(f"tools.toml: tools.{name} needs version_regex")
        tools[name] = spec
    for fam_name in families:
        versions = {t.version for t in tools.values() if t.family == fam_name}
        if len(versions) != 1:
            raise ManifestInvalid(f"tools.toml: family {fam_name} has tool versions {versions}")
    crds = data.get("flux_crds", {})
    sources = tuple(CrdSource(str(s["module"]), str(s["version"]), str(s["dir"]))
                    for s in crds.get("sources", []))
    return Manifest(MappingProxyType(tools), MappingProxyType(families),
                    str(crds.get("version", "")), sources,
                    str(data.get("flux", {}).get("release", "")))


_MANIFEST: Manifest | None = None


def load_manifest() -> Manifest:
    """The manifest shipped in the package (read once per process)."""
    global _MANIFEST
    if _MANIFEST is None:
        text = resources.files("harness").joinpath("tools.toml").read_text(encoding="utf-8")
        _MANIFEST = parse_manifest(tomllib.loads(text))
    return _MANIFEST


def flux_release() -> str:
    """The pinned Flux release, e.g. "v2.9.2" (its controllers are pinned together)."""
    return load_manifest().flux_release


def flux_version() -> str:
    """The version of the pinned source-/kustomize-controller, e.g. "v1.9.3"."""
    return load_manifest().tools[FLUX_TOOLS[0]].version


# --- results --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedTool:
    """A pinned binary that was found (or built) and answered with its pinned version."""

    name: str
    version: str
    path: Path
    source: Source
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "path": str(self.path),
                "source": self.source, "sha256": self.sha256}


def _same_version(a: str, b: str) -> bool:
    return a.strip().removeprefix("v") == b.strip().removeprefix("v")


class _Unusable(Exception):
    """A candidate binary is not the pinned version (or does not run); `reason` says why."""

    def __init__(self, reason: str, found_version: str | None = None, *,
                 unverifiable: bool = False) -> None:
        self.reason = reason
        self.found_version = found_version
        self.unverifiable = unverifiable  # runs and looks right, but does not say its version
        super().__init__(reason)


def check_version(spec: ToolSpec, binary: Path) -> str:
    """Run `binary` with the spec's version args; return the version it is, or raise _Unusable."""
    if not os.access(binary, os.X_OK):
        raise _Unusable(f"{binary} is not executable")
    cmd = Command.of(binary, *spec.version_args).with_timeout(VERSION_CHECK_TIMEOUT_S)
    try:
        result = run(cmd, check=False)
    except CommandError as exc:
        raise _Unusable(f"`{' '.join(cmd.argv)}` did not finish: "
                        f"{exc.stderr.strip()[-200:]}") from exc
    except OSError as exc:  # exec format error and friends
        raise _Unusable(f"`{' '.join(cmd.argv)}` could not run: {exc}") from exc
    output = f"{result.stdout}\n{result.stderr}"
    argv = " ".join(cmd.argv)
    if spec.expect_regex and not re.search(spec.expect_regex, output):
        raise _Unusable(f"`{argv}` (exit {result.returncode}) did not print "
                        f"{spec.expect_regex!r}: {output.strip()[:200]!r}")
    if spec.version_from == "buildinfo":
        info = gobuild.read_build_info(binary)
        found = info.module_version(spec.module) if info else None
        if found is None:
            raise _Unusable(f"{binary} has no Go build info naming {spec.module}'s version",
                            unverifiable=True)
        return found
    assert spec.version_regex is not None  # parse_manifest guarantees it
    match = re.search(spec.version_regex, output)
    if match is None:
        raise _Unusable(f"`{argv}` (exit {result.returncode}) printed no version matching "
                        f"{spec.version_regex!r}: {output.strip()[:200]!r}")
    return match.group(1)


def _verified(spec: ToolSpec, binary: Path) -> str:
    """check_version, but also insist on the pinned version."""
    found = check_version(spec, binary)
    if not _same_version(found, spec.version):
        raise _Unusable(f"{binary} is {spec.name} {found}, not the pinned {spec.version}", found)
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- the cache ------------------------------------------------------------------------------

def cache_path(config: Config, spec: ToolSpec) -> Path:
    return config.tools_cache / spec.name / spec.version / spec.name


def _stamp_path(binary: Path) -> Path:
    return binary.with_name(binary.name + ".stamp.json")


def _stamp_key(binary: Path) -> dict[str, int]:
    st = binary.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_stamp(binary: Path, version: str, sha: str) -> None:
    """Record that `binary` (as it is now: size + mtime) was verified, with its sha256."""
    stamp = {**_stamp_key(binary), "version": version, "sha256": sha}
    tmp = _stamp_path(binary).with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(stamp), encoding="utf-8")
    tmp.replace(_stamp_path(binary))


def _read_stamp(binary: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads(_stamp_path(binary).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict):
        return None
    try:
        key = _stamp_key(binary)
    except OSError:
        return None
    if any(stamp.get(k) != v for k, v in key.items()):
        return None
    return stamp


def _from_cache(config: Config, spec: ToolSpec) -> ResolvedTool | None:
    binary = cache_path(config, spec)
    if not binary.is_file():
        return None
    stamp = _read_stamp(binary)
    if stamp and _same_version(str(stamp.get("version", "")), spec.version):
        # Verified when it was installed and unchanged since (same size and mtime).
        return ResolvedTool(spec.name, spec.version, binary, "cache", str(stamp["sha256"]))
    try:
        _verified(spec, binary)
    except _Unusable as why:
        log.warning("cached %s is unusable and will be rebuilt: %s", spec.name, why.reason)
        return None
    sha = sha256_file(binary)
    _write_stamp(binary, spec.version, sha)
    return ResolvedTool(spec.name, spec.version, binary, "cache", sha)


# --- resolution without building ------------------------------------------------------------

def _from_dir(config: Config, spec: ToolSpec) -> ResolvedTool | None:
    if config.tools_dir is None:
        return None
    binary = config.tools_dir / spec.name
    if not binary.is_file():
        return None
    try:
        _verified(spec, binary)
    except _Unusable as why:
        if why.unverifiable:
            # Release binaries built with `go build main.go` carry no module version; the
            # user chose this folder, so trust it but say so.
            log.warning("%s: cannot verify the version (%s); using it because --tools-dir "
                        "names it", binary, why.reason)
        else:
            raise ToolVersionError(
                f"{spec.name} in the tools folder {config.tools_dir} is unusable: {why.reason}",
                tool=spec.name, version=spec.version,
                fix=f"put {spec.name} {spec.version} at {binary}, or remove it from that folder "
                    "so drdrill looks on PATH, in its cache, or builds it") from None
    return ResolvedTool(spec.name, spec.version, binary, "dir", sha256_file(binary))


def _from_path(spec: ToolSpec) -> ResolvedTool | None:
    found = shutil.which(spec.name)
    if found is None:
        return None
    binary = Path(found)
    try:
        _verified(spec, binary)
    except _Unusable as why:
        log.info("skipping %s on PATH: %s", binary, why.reason)
        return None
    return ResolvedTool(spec.name, spec.version, binary, "path", sha256_file(binary))


def resolve_existing(config: Config, spec: ToolSpec) -> ResolvedTool | None:
    """Steps 1-3 of the resolution order; None when the tool must be built."""
    return _from_dir(config, spec) or _from_path(spec) or _from_cache(config, spec)


# --- building -------------------------------------------------------------------------------

def _not_found(config: Config, spec: ToolSpec, missing: list[str], why: str) -> ToolNotFoundError:
    go_min = load_manifest().families[spec.family].go
    looked = ([f"{config.tools_dir}/{spec.name}"] if config.tools_dir else []) + [
        "PATH", str(cache_path(config, spec))]
    others = [m for m in missing if m != spec.name]
    also = f" (also missing: {', '.join(others)})" if others else ""
    return ToolNotFoundError(
        f"{spec.name} {spec.version} was not found (looked in {', '.join(looked)}) and cannot "
        f"be built: {why}{also}",
        tool=spec.name, version=spec.version,
        fix=f"put {spec.name} {spec.version} in a folder and pass --tools-dir DIR "
            f"(or set DRDRILL_TOOLS_DIR=DIR), or put it on PATH; or install Go >= {go_min} "
            "so drdrill can build it from the Go module proxy")


def _usable_go(config: Config, spec: ToolSpec, missing: list[str]) -> str:
    """The Go program to build `spec` with, or ToolNotFoundError with both fixes."""
    if not config.allow_build:
        raise _not_found(config, spec, missing, "building is turned off (DRDRILL_ALLOW_BUILD)")
    go = gobuild.find_go(config.go)
    if go is None:
        raise _not_found(config, spec, missing, f"Go ({config.go!r}) is not installed")
    return go


def _check_go_release(config: Config, go: str, spec: ToolSpec, missing: list[str],
                      progress: Progress) -> None:
    need = load_manifest().families[spec.family].go
    have = gobuild.go_version(go)
    if gobuild.version_tuple(have) >= gobuild.version_tuple(need):
        return
    if os.environ.get("GOTOOLCHAIN", "auto").startswith("local"):
        raise _not_found(config, spec, missing,
                         f"{go} is Go {have}, older than {need}, and GOTOOLCHAIN=local")
    progress(f"note: {go} is Go {have}; Go will fetch a go{need}+ toolchain for family "
             f"{spec.family} (GOTOOLCHAIN)")


def _build_family(config: Config, family: str, go: str, progress: Progress) -> list[str]:
    """Build every tool of `family` into the cache (under the family lock); return those built.

    Another process may have built it while we waited for the lock; then nothing is built.
    """
    manifest = load_manifest()
    plan = manifest.build_plan(family)
    specs = manifest.family_tools(family)
    workdir = config.tools_cache / "build" / f"{family}-{plan.version}"
    lock = config.tools_cache / "locks" / f"{family}-{plan.version}.lock"
    log_path = workdir / "build.log"

    def waiting() -> None:
        progress(f"waiting for another drdrill that is building family {family} (lock {lock})")

    with gobuild.file_lock(lock, on_wait=waiting):
        if all(_from_cache(config, s) is not None for s in specs):
            return []
        n = len(specs)
        slow = (f"; this takes several minutes on {os.cpu_count()} cores"
                if family == "kube" else "")
        progress(f"building {', '.join(plan.names)} {plan.version} (family {family}: "
                 f"{n} binar{'y' if n == 1 else 'ies'}{slow}); log: {log_path}")
        started = time.monotonic()
        workdir.mkdir(parents=True, exist_ok=True)
        for stale in workdir.glob("out-*"):  # left by a builder killed with -9; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        out_dir = Path(tempfile.mkdtemp(prefix="out-", dir=workdir))
        try:
            try:
                built = gobuild.build(plan, go=go, workdir=workdir, out_dir=out_dir,
                                      log_path=log_path, progress=progress)
            except (CommandError, OSError) as exc:
                tail = exc.stderr if isinstance(exc, CommandError) else str(exc)
                raise ToolBuildError(
                    f"building family {family} ({', '.join(plan.names)}) {plan.version} "
                    f"failed; full log: {log_path}\n    "
                    + "\n    ".join(tail.strip().splitlines()[-15:]),
                    tool=specs[0].name, version=plan.version,
                    fix=f"read {log_path}; check network access to the Go module proxy "
                        "(GOPROXY), or supply the binaries with --tools-dir") from exc
            for spec in specs:
                _install(config, spec, built[spec.name], log_path)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        progress(f"built family {family} {plan.version} in {time.monotonic() - started:.0f}s")
        return [s.name for s in specs]


def _install(config: Config, spec: ToolSpec, built: Path, log_path: Path) -> None:
    """Verify a fresh binary, then move it into the cache atomically (same filesystem)."""
    try:
        _verified(spec, built)
    except _Unusable as why:
        raise ToolBuildError(
            f"built {spec.name} but it is unusable: {why.reason} (build log: {log_path})",
            tool=spec.name, version=spec.version,
            fix="the manifest's ldflags or version_regex may be wrong for this version") from None
    target = cache_path(config, spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    sha = sha256_file(built)
    built.replace(target)
    _write_stamp(target, spec.version, sha)


def ensure_tools(config: Config, names: Iterable[str] | None = None, *,
                 progress: Progress | None = None) -> dict[str, ResolvedTool]:
    """Resolve every named tool (default: all), building missing ones; name -> ResolvedTool."""
    manifest = load_manifest()
    say: Progress = progress or (lambda line: log.info("%s", line))
    wanted = list(dict.fromkeys(names if names is not None else TOOL_NAMES))
    unknown = [n for n in wanted if n not in manifest.tools]
    if unknown:
        raise ToolNotFoundError(f"unknown tool(s) {', '.join(unknown)}; known: "
                                f"{', '.join(manifest.tools)}", tool=unknown[0], version="",
                                fix="use one of the names `drdrill tools list` shows")
    resolved: dict[str, ResolvedTool] = {}
    missing: list[str] = []
    for name in wanted:
        found = resolve_existing(config, manifest.tools[name])
        if found is None:
            missing.append(name)
        else:
            resolved[name] = found
    if missing:
        first = manifest.tools[missing[0]]
        go = _usable_go(config, first, missing)
        families = [f for f in manifest.families
                    if any(manifest.tools[m].family == f for m in missing)]
        for family in families:
            spec = next(manifest.tools[m] for m in missing if manifest.tools[m].family == family)
            _check_go_release(config, go, spec, missing, say)
            built = _build_family(config, family, go, say)
            for name in (m for m in missing if manifest.tools[m].family == family):
                cached = _from_cache(config, manifest.tools[name])
                if cached is None:
                    raise ToolBuildError(
                        f"{name} is not in the cache after building family {family}",
                        tool=name, version=manifest.tools[name].version)
                resolved[name] = (ResolvedTool(name, cached.version, cached.path, "built",
                                               cached.sha256) if name in built else cached)
    return {name: resolved[name] for name in wanted}


def list_tools(config: Config) -> list[dict[str, str | None]]:
    """Every pinned tool and where it resolves now, without building anything.

    Keys: name, version, path, source ("dir" | "path" | "cache" | "missing"), sha256, and
    error (why a binary in the tools folder was rejected, else None).
    """
    rows: list[dict[str, str | None]] = []
    for name, spec in load_manifest().tools.items():
        row: dict[str, str | None] = {"name": name, "version": spec.version, "path": None,
                                      "source": "missing", "sha256": None, "error": None}
        try:
            found = resolve_existing(config, spec)
        except ToolVersionError as exc:
            row["error"] = str(exc)
        else:
            if found is not None:
                row.update(found.to_dict())
        rows.append(row)
    return rows


# --- Flux CRDs ------------------------------------------------------------------------------

def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.is_file())


def flux_crds(config: Config, *, progress: Progress | None = None) -> list[Path]:
    """The CRD YAML files of the pinned Flux controllers (tools folder, cache, or downloaded)."""
    manifest = load_manifest()
    say: Progress = progress or (lambda line: log.info("%s", line))
    version = manifest.flux_crds_version
    if config.tools_dir is not None and (files := _yaml_files(config.tools_dir / FLUX_CRDS_DIR)):
        return files
    target = config.tools_cache / FLUX_CRDS_DIR / version
    if files := _yaml_files(target):
        return files
    why = ("downloading is turned off (DRDRILL_ALLOW_BUILD)" if not config.allow_build
           else f"Go ({config.go!r}) is not installed")
    go = gobuild.find_go(config.go) if config.allow_build else None
    if go is None:
        raise ToolNotFoundError(
            f"the Flux {version} CRDs were not found in {target} and cannot be downloaded: {why}",
            tool=FLUX_CRDS_DIR, version=version,
            fix=f"copy the CRD YAML files of Flux {version} (config/crd/bases of "
                "source-, kustomize- and helm-controller) into DIR/flux-crds/ and pass "
                "--tools-dir DIR (or set DRDRILL_TOOLS_DIR); or install Go so drdrill can "
                "download them from the Go module proxy")
    lock = config.tools_cache / "locks" / f"{FLUX_CRDS_DIR}-{version}.lock"
    with gobuild.file_lock(lock, on_wait=lambda: say(f"waiting for another drdrill fetching "
                                                      f"the Flux {version} CRDs")):
        if files := _yaml_files(target):
            return files
        say(f"fetching the Flux {version} CRDs from the Go module proxy")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            for src in manifest.flux_crds:
                try:
                    root = gobuild.module_dir(go, src.module, src.version, cwd=staging)
                except CommandError as exc:
                    raise ToolBuildError(
                        f"could not download {src.module}@{src.version} for the Flux CRDs: "
                        f"{exc}", tool=FLUX_CRDS_DIR, version=version, fix=exc.fix) from exc
                found = _yaml_files(root / src.dir)
                if not found:
                    raise ToolBuildError(f"{src.module}@{src.version} has no YAML in {src.dir}",
                                         tool=FLUX_CRDS_DIR, version=version)
                gobuild.copy_files(found, staging)
            staging.replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _yaml_files(target)
