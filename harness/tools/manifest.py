"""The one manifest of pinned binaries (`harness/tools.toml`) as frozen specs, and build plans.

Every other module of `harness.tools` reads pins from here; nothing else parses the TOML.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

from harness.errors import HarnessError

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
MIRROR_TOOLS: tuple[str, ...] = ("registry",)
"""The drill's registry mirror (kind drills, `drdrill mirror`); never built for embedded drills."""
BENCH_TOOLS: tuple[str, ...] = ("flux",)
"""Only the benchmark's peers need these; `tools ensure` builds them only when named."""
CI_TOOLS: tuple[str, ...] = ("actionlint",)
"""What checks the CI workflows `drdrill init` writes; built only when named."""
ON_DEMAND_TOOLS: tuple[str, ...] = BENCH_TOOLS + CI_TOOLS
"""Missing is not a broken install: nothing but their own command needs them."""
ALL_TOOL_NAMES: tuple[str, ...] = tuple(dict.fromkeys(TOOL_NAMES + KIND_TOOLS + MIRROR_TOOLS
                                                      + ON_DEMAND_TOOLS))
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

FLUX_CRDS_DIR = "flux-crds"


@dataclass(frozen=True)
class ReleaseSpec:
    """Where the official release publishes the binary, and the checksum file that vouches for
    it. `{version}`, `{os}` and `{arch}` are filled in; `member` is the binary's path inside an
    archive (none: the download is the binary)."""

    url: str
    checksums: str
    member: str | None = None


@dataclass(frozen=True)
class ImageSpec:
    """The official OCI image that carries the binary at `path`; `digest` pins its index (or
    manifest) when given."""

    ref: str
    path: str
    digest: str | None = None


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
    release: ReleaseSpec | None = None
    image: ImageSpec | None = None


@dataclass(frozen=True)
class Overlay:
    """`file` of `module`@`version` is compiled as `content` (a `go build -overlay` entry)."""

    module: str
    version: str
    file: str
    content: str


@dataclass(frozen=True)
class FamilySpec:
    """A wrapper module from which one `go build` makes several tools."""

    name: str
    go: str
    require: tuple[tuple[str, str], ...]
    replace: tuple[str, ...]
    overlay: tuple[Overlay, ...] = ()


@dataclass(frozen=True)
class BuildPlan:
    """Everything one `go build` of a family needs."""

    family: str
    version: str
    go_directive: str
    require: tuple[tuple[str, str], ...]
    replace: tuple[str, ...]
    packages: tuple[str, ...]
    """Main packages, in the same order as `names`."""
    names: tuple[str, ...]
    ldflags: tuple[str, ...]
    overlay: tuple[Overlay, ...] = ()

    @property
    def module_path(self) -> str:
        return f"drdrill.local/tools/{self.family}"

    def go_mod(self, patched: Sequence[str] = ()) -> str:
        """The wrapper's go.mod; `patched` are replace lines to local copies (overlays)."""
        lines = [f"module {self.module_path}", "", f"go {self.go_directive}", ""]
        lines += ["require ("] + [f"\t{mod} {ver}" for mod, ver in self.require] + [")", ""]
        replace = [*self.replace, *patched]
        if replace:
            lines += ["replace ("] + [f"\t{r}" for r in replace] + [")", ""]
        return "\n".join(lines)

    def build_argv(self, go: str, out_dir: Path) -> list[str]:
        # One package: name the file. Several: `-o dir/` and Go names each after its package.
        target = out_dir / self.names[0] if len(self.packages) == 1 else f"{out_dir}{os.sep}"
        argv = [go, "build", "-v", "-mod=mod", "-trimpath"]
        if self.ldflags:
            argv += ["-ldflags", " ".join(self.ldflags)]
        return [*argv, "-o", os.fspath(target), *self.packages]

    def output_path(self, out_dir: Path, name: str) -> Path:
        if len(self.packages) == 1:
            return out_dir / name
        return out_dir / go_binary_name(self.packages[self.names.index(name)])


def go_binary_name(package: str) -> str:
    """The file name `go build -o dir/` gives a main package (a /vN suffix is skipped)."""
    elems = package.rstrip("/").split("/")
    if len(elems) > 1 and re.fullmatch(r"v\d+", elems[-1]):
        return elems[-2]
    return elems[-1]


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
    npm: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Node packages drdrill runs: name -> pinned version."""

    def family_tools(self, family: str) -> tuple[ToolSpec, ...]:
        return tuple(t for t in self.tools.values() if t.family == family)

    def family_version(self, family: str) -> str:
        return self.family_tools(family)[0].version

    def build_plan(self, family: str) -> BuildPlan:
        fam = self.families[family]
        tools = self.family_tools(family)
        ldflags: list[str] = []
        for tool in tools:
            ldflags += [f for f in tool.ldflags if f not in ldflags]
        return BuildPlan(
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
            overlay.append(Overlay(module, required[module], file,
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
                ldflags=_strs(raw.get("ldflags", []), f"tools.{name}.ldflags"),
                release=ReleaseSpec(str(raw["release"]["url"]), str(raw["release"]["checksums"]),
                                    raw["release"].get("member")) if "release" in raw else None,
                image=ImageSpec(str(raw["image"]["ref"]), str(raw["image"]["path"]),
                                raw["image"].get("digest")) if "image" in raw else None)
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
    npm = {str(k): str(v) for k, v in data.get("npm", {}).items()}
    return Manifest(MappingProxyType(tools), MappingProxyType(families),
                    str(crds.get("version", "")), sources,
                    str(data.get("flux", {}).get("release", "")), MappingProxyType(npm))


_MANIFEST: Manifest | None = None


def pins_digest() -> str:
    """16 hex digits of the manifest's sha256: a cache key that changes with any pin."""
    text = resources.files("harness").joinpath("tools.toml").read_bytes()
    return hashlib.sha256(text).hexdigest()[:16]


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
