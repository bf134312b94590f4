"""Pinned tool resolution: manifest, resolution order, version checks, fake builds, build info."""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import tools
from harness.cli.tools import add_tools_commands
from harness.config import Config
from harness.errors import ToolBuildError, ToolNotFoundError, ToolVersionError
from harness.tools import build, buildinfo, manifest, resolve

pytestmark = pytest.mark.unit

# The pins under test come from the manifest, so bumping a version does not break these tests.
MANIFEST = tools.load_manifest()
ETCD = MANIFEST.tools["etcd"].version  # e.g. "v3.6.16"
KUBE = MANIFEST.tools["kube-apiserver"].version
KUBE_GO = MANIFEST.families["kube"].go
FLUX = tools.flux_version()


# --- helpers --------------------------------------------------------------------------------

def _script(path: Path, body: str, tail: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # `exit` before `tail`, so binary data after it (a fake build-info blob) is never read by sh.
    path.write_bytes(f"#!/bin/sh\n{body}\nexit 0\n".encode() + tail)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_etcd(folder: Path, version: str = ETCD.removeprefix("v"),
              marker: Path | None = None) -> Path:
    touch = f': > "{marker}"\n' if marker else ""  # PATH is isolated: builtins only
    return _script(folder / "etcd",
                   f'{touch}echo "etcd Version: {version}"\necho "Go Version: go1.26.8"')


def buildinfo_blob(go_version: str, modinfo: str) -> bytes:
    """A .go.buildinfo section laid out as Go >= 1.18 writes it."""
    def varbytes(raw: bytes) -> bytes:
        n, out = len(raw), bytearray()
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out) + raw

    sentinel_start = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
    sentinel_end = bytes.fromhex("f932433186182072008242104116d8f2")
    header = b"\xff Go buildinf:" + bytes([8, 0x2]) + b"\x00" * 16
    return (header + varbytes(go_version.encode())
            + varbytes(sentinel_start + modinfo.encode() + sentinel_end))


def flux_modinfo(version: str) -> str:
    return ("path\tgithub.com/fluxcd/source-controller\n"
            f"mod\tdrdrill.local/tools/source-controller\t(devel)\t\n"
            f"dep\tgithub.com/fluxcd/source-controller\t{version}\th1:abc=\n"
            "dep\tgithub.com/opencontainers/go-digest\tv1.0.0\th1:x=\n"
            "=>\tgithub.com/opencontainers/go-digest\tv1.0.1-0.20220411205349-bde1400a84be\th1:y=\n"
            "build\t-trimpath=true\n")


def fake_source_controller(folder: Path, version: str) -> Path:
    # The string a program importing debug/buildinfo carries as data comes first: a decoy.
    decoy = b"\x00" * 7 + b"\xff Go buildinf:" + b"\x00" * 40
    return _script(folder / "source-controller", 'echo "      --storage-path string   where"',
                   tail=decoy + buildinfo_blob("go1.26.8", flux_modinfo(version)))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """An isolated PATH and cache; returns the folders a test populates."""
    dirs = {name: tmp_path / name for name in ("tools_dir", "pathdir", "cache")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setenv("PATH", str(dirs["pathdir"]))
    return dirs


def config(env: dict[str, Path], *, tools_dir: bool = True, go: str = "/nonexistent/go",
           allow_build: bool = True) -> Config:
    return Config(cache_dir=env["cache"], tools_dir=env["tools_dir"] if tools_dir else None,
                  go=go, allow_build=allow_build)


def seed_cache(cfg: Config, version: str = ETCD.removeprefix("v")) -> Path:
    spec = tools.load_manifest().tools["etcd"]
    target = tools.cache_path(cfg, spec)
    fake_etcd(target.parent, version)
    return target


# --- manifest -------------------------------------------------------------------------------

def test_manifest_lists_every_tool_with_a_buildable_family() -> None:
    manifest = tools.load_manifest()
    assert set(manifest.tools) == set(tools.ALL_TOOL_NAMES)
    assert not set(tools.TOOL_NAMES) & set(tools.BENCH_TOOLS)  # `ensure` alone never builds them
    assert set(tools.EMBEDDED_TOOLS) | set(tools.FLUX_TOOLS) < set(tools.TOOL_NAMES)
    # The kind node's binaries stay out of the default `tools ensure` set.
    assert {"kind", "kubelet", "kubeadm", "coredns"}.isdisjoint(tools.TOOL_NAMES)
    assert set(tools.KIND_TOOLS) <= set(manifest.tools)
    for spec in manifest.tools.values():
        assert spec.version.startswith("v"), spec
        assert spec.family in manifest.families
        assert spec.version_args
        family = manifest.families[spec.family]
        assert build.version_tuple(family.go) >= (1, 24, 0)
        assert (spec.module, spec.version) in family.require or spec.family == "kube"
    kube = manifest.families["kube"]
    assert len(kube.replace) == 31
    staging = "v0." + KUBE.removeprefix("v1.")  # k8s.io/kubernetes v1.X.Y ships staging v0.X.Y
    assert all(r.endswith(f" {staging}") for r in kube.replace)


def test_flux_version_and_crd_sources_agree() -> None:
    manifest = tools.load_manifest()
    assert manifest.tools["kustomize-controller"].version == FLUX
    # The CRD cache key names every source's version, so a change to one refreshes the cache.
    # The CRD cache key names the whole Flux release, so a change of release refreshes it.
    # A suffix after it marks a change of the source list within one release.
    assert manifest.flux_crds_version.startswith(f"flux-{manifest.flux_release}")
    by_module = {manifest.tools[n].module: manifest.tools[n]
                 for n in (*tools.FLUX_TOOLS, *tools.HELM_TOOLS, *tools.WATCHER_TOOLS,
                           *tools.NOTIFICATION_TOOLS, *tools.IMAGE_TOOLS)}
    assert {s.module for s in manifest.flux_crds} == set(by_module)
    for src in manifest.flux_crds:
        assert src.version == by_module[src.module].version


def test_kube_family_builds_its_binaries_in_one_go_build(tmp_path: Path) -> None:
    plan = tools.load_manifest().build_plan("kube")
    argv = plan.build_argv("go", tmp_path)
    assert argv[argv.index("-o") + 1].endswith(os.sep)
    assert argv[-4:] == [f"k8s.io/kubernetes/cmd/{n}" for n in
                         ("kube-apiserver", "kube-controller-manager", "kube-scheduler",
                          "kubectl")]
    ldflags = argv[argv.index("-ldflags") + 1].split(" -X ")
    assert ldflags[0] == "-s -w"
    assert len(ldflags) == 5  # the tools' identical -X flags are not repeated
    mod = plan.go_mod()
    assert f"go {KUBE_GO}" in mod
    assert "\tk8s.io/client-go => k8s.io/client-go v0." + KUBE.removeprefix("v1.") in mod


def test_single_package_build_names_the_output_after_the_tool(tmp_path: Path) -> None:
    plan = tools.load_manifest().build_plan("etcd")
    argv = plan.build_argv("go", tmp_path)
    assert argv[argv.index("-o") + 1] == str(tmp_path / "etcd")
    assert plan.output_path(tmp_path, "etcd") == tmp_path / "etcd"


@pytest.mark.parametrize(("package", "name"), [
    ("go.etcd.io/etcd/server/v3", "server"),
    ("sigs.k8s.io/kustomize/kustomize/v5", "kustomize"),
    ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
    ("github.com/fluxcd/source-controller", "source-controller"),
])
def test_go_binary_name(package: str, name: str) -> None:
    assert manifest.go_binary_name(package) == name


def test_flux_cli_is_its_own_family_of_the_pinned_release_with_the_embed_replaced(
        tmp_path: Path) -> None:
    manifest = tools.load_manifest()
    spec = manifest.tools["flux"]
    assert spec.version == manifest.flux_release
    assert spec.family == "flux-cli" and tools.BENCH_TOOLS == ("flux",)
    assert f"-X main.VERSION={spec.version.removeprefix('v')}" in spec.ldflags
    plan = manifest.build_plan("flux-cli")
    (overlay,) = plan.overlay
    assert (overlay.module, overlay.version) == (spec.module, spec.version)
    assert overlay.file == "cmd/flux/manifests.embed.go"
    assert "func writeEmbeddedManifests(dir string) error" in overlay.content
    assert "go:embed" not in overlay.content
    replace = "github.com/fluxcd/flux2/v2 => ./patched/github.com_fluxcd_flux2_v2"
    assert f"\t{replace}" in plan.go_mod([replace])
    assert "gopkg.in/yaml.v3 => gopkg.in/yaml.v3 v3.0.1" in plan.go_mod()


def test_overlay_module_is_copied_out_of_the_module_cache_and_patched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "modcache" / "example.com" / "m@v1.0.0"
    (cache / "cmd").mkdir(parents=True)
    (cache / "cmd" / "embed.go").write_text("package main // go:embed x\n")
    (cache / "go.mod").write_text("module example.com/m\n")
    for p in (cache / "cmd" / "embed.go", cache / "go.mod", cache / "cmd", cache):
        p.chmod(0o555 if p.is_dir() else 0o444)
    monkeypatch.setattr(build, "module_dir", lambda go, module, version, cwd: cache)
    plan = manifest.BuildPlan("f", "v1.0.0", "1.24.0", (("example.com/m", "v1.0.0"),), (),
                              ("example.com/m/cmd",), ("m",), (),
                              (manifest.Overlay("example.com/m", "v1.0.0", "cmd/embed.go",
                                                "package main\n"),))
    work = tmp_path / "work"
    work.mkdir()
    lines = build._patched_modules(plan, "go", work)
    assert lines == ["example.com/m => ./patched/example.com_m"]
    assert (work / "patched" / "example.com_m" / "cmd" / "embed.go").read_text() == \
        "package main\n"
    assert (cache / "cmd" / "embed.go").read_text().startswith("package main // go:embed")
    build._patched_modules(plan, "go", work)  # a second build replaces the copy
    for p in (cache / "cmd", cache):
        p.chmod(0o755)


def test_parse_manifest_rejects_an_overlay_of_a_module_the_family_does_not_require() -> None:
    data = {"families": {"a": {"go": "1.24.0", "require": ["m v1.0.0"], "overlay": [
        {"module": "other", "file": "x.go", "with": "overlays/flux2-manifests.embed.go"}]}}}
    with pytest.raises(tools.ManifestInvalid, match="overlay names other"):
        tools.parse_manifest(data)
    data["families"]["a"]["overlay"] = [{"module": "m", "file": "x.go", "with": "nope.go"}]
    with pytest.raises(tools.ManifestInvalid, match=r"'nope\.go' is not in the harness package"):
        tools.parse_manifest(data)


def test_parse_manifest_rejects_an_unknown_family() -> None:
    data = {"families": {"a": {"go": "1.24.0", "require": ["m v1.0.0"]}},
            "tools": {"x": {"version": "v1", "family": "b", "module": "m", "package": "m",
                            "version_args": ["--version"], "version_regex": "(.*)"}}}
    with pytest.raises(tools.ManifestInvalid, match="unknown family 'b'"):
        tools.parse_manifest(data)


# --- resolution order -----------------------------------------------------------------------

def test_tools_dir_beats_path_beats_cache(env: dict[str, Path]) -> None:
    cfg = config(env)
    fake_etcd(env["tools_dir"])
    fake_etcd(env["pathdir"])
    cached = seed_cache(cfg)

    got = tools.ensure_tools(cfg, ["etcd"])["etcd"]
    assert (got.source, got.path) == ("dir", env["tools_dir"] / "etcd")
    assert got.version == ETCD

    got = tools.ensure_tools(config(env, tools_dir=False), ["etcd"])["etcd"]
    assert (got.source, got.path) == ("path", env["pathdir"] / "etcd")

    (env["pathdir"] / "etcd").unlink()
    got = tools.ensure_tools(cfg, ["etcd"])["etcd"]  # tools_dir given but without etcd
    (env["tools_dir"] / "etcd").unlink()
    got = tools.ensure_tools(cfg, ["etcd"])["etcd"]
    assert (got.source, got.path) == ("cache", cached)
    assert got.sha256 == tools.sha256_file(cached)
    assert got.to_dict() == {"name": "etcd", "version": ETCD, "path": str(cached),
                             "source": "cache", "sha256": got.sha256}


def test_wrong_version_in_tools_dir_is_an_error(env: dict[str, Path]) -> None:
    fake_etcd(env["tools_dir"], "3.5.0")
    fake_etcd(env["pathdir"])  # a good one on PATH must not hide the user's mistake
    pattern = rf"etcd 3\.5\.0, not the pinned {re.escape(ETCD)}"
    with pytest.raises(ToolVersionError, match=pattern) as exc:
        tools.ensure_tools(config(env), ["etcd"])
    assert (exc.value.tool, exc.value.version) == ("etcd", ETCD)
    assert exc.value.fix is not None and str(env["tools_dir"] / "etcd") in exc.value.fix


def test_wrong_version_on_path_is_skipped(env: dict[str, Path],
                                          caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(env, tools_dir=False)
    fake_etcd(env["pathdir"], "3.5.0")
    cached = seed_cache(cfg)
    with caplog.at_level("INFO", logger="harness.tools"):
        got = tools.ensure_tools(cfg, ["etcd"])["etcd"]
    assert (got.source, got.path) == ("cache", cached)
    assert "skipping" in caplog.text and "3.5.0" in caplog.text


def test_binary_that_prints_no_version_is_skipped_on_path(env: dict[str, Path]) -> None:
    cfg = config(env, tools_dir=False)
    _script(env["pathdir"] / "etcd", "echo hello")
    seed_cache(cfg)
    assert tools.ensure_tools(cfg, ["etcd"])["etcd"].source == "cache"


def test_missing_without_go_names_tool_version_and_both_fixes(env: dict[str, Path]) -> None:
    started = time.monotonic()
    with pytest.raises(ToolNotFoundError) as exc:
        tools.ensure_tools(config(env), ["kube-apiserver", "etcd"])
    elapsed = time.monotonic() - started
    assert elapsed < 1.0
    msg = str(exc.value)
    assert f"kube-apiserver {KUBE}" in msg
    assert "also missing: etcd" in msg
    assert "--tools-dir" in msg and "DRDRILL_TOOLS_DIR" in msg and "PATH" in msg
    assert f"install Go >= {KUBE_GO}" in msg
    assert "/nonexistent/go" in msg
    assert (exc.value.tool, exc.value.version) == ("kube-apiserver", KUBE)


def test_missing_with_builds_turned_off(env: dict[str, Path], tmp_path: Path) -> None:
    go = _script(tmp_path / "go", "echo should-not-run; exit 1")
    with pytest.raises(ToolNotFoundError, match="building is turned off"):
        tools.ensure_tools(config(env, go=str(go), allow_build=False), ["kwok"])


def test_unknown_tool_name_is_rejected(env: dict[str, Path]) -> None:
    with pytest.raises(ToolNotFoundError, match="unknown tool"):
        tools.ensure_tools(config(env), ["kubectl-fancy"])


# --- the cache stamp ------------------------------------------------------------------------

def test_cached_binary_is_not_rerun_while_its_stamp_matches(env: dict[str, Path],
                                                           tmp_path: Path) -> None:
    cfg = config(env, tools_dir=False)
    marker = tmp_path / "ran"
    spec = tools.load_manifest().tools["etcd"]
    target = tools.cache_path(cfg, spec)
    fake_etcd(target.parent, marker=marker)
    first = tools.ensure_tools(cfg, ["etcd"])["etcd"]
    assert marker.exists()  # verified once, stamp written
    marker.unlink()
    second = tools.ensure_tools(cfg, ["etcd"])["etcd"]
    assert not marker.exists()
    assert second == first
    # Changed behind our back: verified again, and a wrong version is not trusted.
    fake_etcd(target.parent, version="3.5.0", marker=marker)
    os.utime(target, ns=(1, 1))
    with pytest.raises(ToolNotFoundError):
        tools.ensure_tools(cfg, ["etcd"])
    assert marker.exists()


# --- building with a fake Go ----------------------------------------------------------------

FAKE_GO = r"""
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_GO_LOG"], "a") as log:
    log.write(" ".join(args) + "\n")
if args[0] == "env":
    print("go1.26.8")
elif args[0] == "get":
    print("go: added " + args[1])
elif args[0] == "mod":
    print(json.dumps({"Path": args[3], "Dir": os.environ["FAKE_MOD_DIR"]}))
elif args[0] == "build":
    time.sleep(float(os.environ.get("FAKE_GO_SLEEP", "0")))
    out = args[args.index("-o") + 1]
    print("go.etcd.io/etcd/server/v3")
    with open(out, "w") as fh:
        fh.write('#!/bin/sh\necho "etcd Version: %s"\n' % os.environ["FAKE_ETCD_VERSION"])
    os.chmod(out, 0o755)
"""


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    calls = tmp_path / "go-calls.log"
    monkeypatch.setenv("FAKE_GO_LOG", str(calls))
    monkeypatch.setenv("FAKE_ETCD_VERSION", ETCD.removeprefix("v"))
    go = tmp_path / "bin" / "go"
    go.parent.mkdir()
    go.write_text(f"#!{sys.executable}\n{FAKE_GO}")
    go.chmod(0o755)
    return go, calls


def test_missing_tool_is_built_into_the_cache_then_found_there(
        env: dict[str, Path], fake_go: tuple[Path, Path]) -> None:
    go, calls = fake_go
    cfg = config(env, go=str(go))
    lines: list[str] = []
    got = tools.ensure_tools(cfg, ["etcd"], progress=lines.append)["etcd"]
    assert got.source == "built"
    assert got.path == env["cache"] / "tools" / "etcd" / ETCD / "etcd"
    assert lines[0].startswith(f"building etcd {ETCD} (family etcd: 1 binary)")
    argv = calls.read_text().splitlines()
    assert argv[0] == "env GOVERSION"
    assert argv[1].startswith(f"get go.etcd.io/etcd/server/v3@{ETCD} go.etcd.io/etcd/api/v3@")
    assert argv[-1].startswith("build -v -mod=mod -trimpath -ldflags -s -w -o ")
    workdir = env["cache"] / "tools" / "build" / f"etcd-{ETCD}"
    assert "replace (" in (workdir / "go.mod").read_text()
    assert "go.etcd.io/etcd/server/v3" in (workdir / "build.log").read_text()
    assert not list(workdir.glob("out-*"))  # the staging folder is cleaned up

    calls.unlink()
    again = tools.ensure_tools(cfg, ["etcd"])["etcd"]
    assert (again.source, again.sha256) == ("cache", got.sha256)
    assert not calls.exists()  # the warm path never runs Go


def test_concurrent_ensures_build_once(env: dict[str, Path], fake_go: tuple[Path, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    go, calls = fake_go
    monkeypatch.setenv("FAKE_GO_SLEEP", "0.5")
    cfg = config(env, go=str(go))
    results: list[tools.ResolvedTool] = []
    errors: list[BaseException] = []

    def ensure() -> None:
        try:
            results.append(tools.ensure_tools(cfg, ["etcd"], progress=lambda _: None)["etcd"])
        except Exception as exc:  # a thread cannot raise into the test: asserted below
            errors.append(exc)

    threads = [threading.Thread(target=ensure) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert sorted(r.source for r in results) == ["built", "cache"]
    assert results[0].sha256 == results[1].sha256
    builds = [c for c in calls.read_text().splitlines() if c.startswith("build ")]
    assert len(builds) == 1


def test_build_failure_names_the_log(env: dict[str, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_GO_LOG", str(tmp_path / "calls"))
    go = _script(tmp_path / "go", 'case "$1" in env) echo go1.26.8;; build) '
                                  'echo "cannot find module"; exit 1;; esac')
    with pytest.raises(ToolBuildError, match=r"build\.log") as exc:
        tools.ensure_tools(config(env, go=str(go)), ["etcd"])
    assert "cannot find module" in str(exc.value)
    assert "failed; full log: " in str(exc.value)
    del exc
    gc.collect()  # the traceback holds the leaked pipe; let it go while the mark applies


def test_list_tools_never_builds(env: dict[str, Path], fake_go: tuple[Path, Path]) -> None:
    go, calls = fake_go
    cfg = config(env, go=str(go))
    fake_etcd(env["tools_dir"])
    _script(env["tools_dir"] / "kwok", 'echo "kwok version v0.6.0"')
    rows = {r["name"]: r for r in tools.list_tools(cfg)}
    assert set(rows) == set(tools.ALL_TOOL_NAMES)
    assert rows["etcd"]["source"] == "dir"
    assert rows["kwok"]["source"] == "missing"
    assert "v0.6.0" in str(rows["kwok"]["error"])
    assert rows["kube-apiserver"] == {"name": "kube-apiserver", "version": KUBE,
                                      "path": None, "source": "missing", "sha256": None,
                                      "error": None}
    assert not calls.exists()


def test_flux_crds_come_from_the_module_zip_then_the_cache(
        env: dict[str, Path], fake_go: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    go, calls = fake_go
    mod = tmp_path / "mod"
    (mod / "config" / "crd" / "bases").mkdir(parents=True)
    crd = mod / "config" / "crd" / "bases" / "source.toolkit.fluxcd.io_gitrepositories.yaml"
    crd.write_text("kind: CustomResourceDefinition\n")
    crd.chmod(0o444)  # as in GOMODCACHE
    monkeypatch.setenv("FAKE_MOD_DIR", str(mod))
    cfg = config(env, tools_dir=False, go=str(go))
    files = tools.flux_crds(cfg)
    assert [f.name for f in files] == [crd.name]
    assert files[0].parent == env["cache"] / "tools" / "flux-crds" / tools.load_manifest(
    ).flux_crds_version
    assert f"mod download -json github.com/fluxcd/kustomize-controller@{FLUX}" in calls.read_text()
    calls.unlink()
    assert tools.flux_crds(cfg) == files
    assert not calls.exists()


def test_flux_crds_prefer_the_tools_dir(env: dict[str, Path]) -> None:
    (env["tools_dir"] / "flux-crds").mkdir()
    (env["tools_dir"] / "flux-crds" / "a.yaml").write_text("kind: CustomResourceDefinition\n")
    assert tools.flux_crds(config(env)) == [env["tools_dir"] / "flux-crds" / "a.yaml"]


def test_flux_crds_without_go_say_how_to_supply_them(env: dict[str, Path]) -> None:
    with pytest.raises(ToolNotFoundError, match="flux-crds/"):
        tools.flux_crds(config(env, tools_dir=False))


# --- Go build info --------------------------------------------------------------------------

def test_build_info_is_read_past_a_decoy(tmp_path: Path) -> None:
    binary = fake_source_controller(tmp_path, FLUX)
    info = buildinfo.read_build_info(binary)
    assert info is not None
    assert info.go_version == "go1.26.8"
    assert info.main == ("drdrill.local/tools/source-controller", "(devel)")
    assert info.module_version("github.com/fluxcd/source-controller") == FLUX
    assert info.module_version("drdrill.local/tools/source-controller") is None  # (devel)
    assert info.replaced["github.com/opencontainers/go-digest"].startswith("github.com/")
    assert info.settings["-trimpath"] == "true"


def test_build_info_absent(tmp_path: Path) -> None:
    assert buildinfo.read_build_info(_script(tmp_path / "plain", "echo hi")) is None
    (tmp_path / "empty").write_bytes(b"")
    assert buildinfo.read_build_info(tmp_path / "empty") is None


def test_flux_controller_version_comes_from_build_info(env: dict[str, Path]) -> None:
    fake_source_controller(env["tools_dir"], FLUX)
    got = tools.ensure_tools(config(env), ["source-controller"])["source-controller"]
    assert (got.source, got.version) == ("dir", FLUX)
    fake_source_controller(env["tools_dir"], "v1.0.0-old")
    with pytest.raises(ToolVersionError, match=r"v1\.0\.0-old"):
        tools.ensure_tools(config(env), ["source-controller"])


def test_flux_controller_without_build_info_is_trusted_only_from_the_tools_dir(
        env: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    # Release binaries built with `go build main.go` carry no module version.
    _script(env["tools_dir"] / "source-controller", 'echo "--storage-path"')
    with caplog.at_level("WARNING", logger="harness.tools"):
        got = tools.ensure_tools(config(env), ["source-controller"])["source-controller"]
    assert (got.source, got.version) == ("dir", FLUX)
    assert "cannot verify the version" in caplog.text
    (env["tools_dir"] / "source-controller").rename(env["pathdir"] / "source-controller")
    rows = {r["name"]: r for r in tools.list_tools(config(env, tools_dir=False))}
    assert rows["source-controller"]["source"] == "missing"


def test_flux_controller_must_print_its_flags(env: dict[str, Path]) -> None:
    _script(env["tools_dir"] / "source-controller", "echo usage",
            tail=buildinfo_blob("go1.26.8", flux_modinfo(FLUX)))
    with pytest.raises(ToolVersionError, match="--storage-path"):
        tools.ensure_tools(config(env), ["source-controller"])


# --- the lock -------------------------------------------------------------------------------

def test_family_lock_makes_the_second_builder_wait(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "kube.lock"
    events: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def first() -> None:
        with resolve.file_lock(lock):
            events.append("first in")
            holding.set()
            release.wait(5)
            events.append("first out")

    def second() -> None:
        with resolve.file_lock(lock, on_wait=lambda: events.append("second waits")):
            events.append("second in")

    t1 = threading.Thread(target=first)
    t1.start()
    assert holding.wait(5)
    t2 = threading.Thread(target=second)
    t2.start()
    time.sleep(0.2)
    assert events == ["first in", "second waits"]
    release.set()
    t1.join(5)
    t2.join(5)
    assert events == ["first in", "second waits", "first out", "second in"]


# --- CLI ------------------------------------------------------------------------------------

def test_tools_list_json(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DRDRILL_CACHE_DIR", str(env["cache"]))
    monkeypatch.setenv("DRDRILL_GO", "/nonexistent/go")
    fake_etcd(env["tools_dir"])
    parser = argparse.ArgumentParser(prog="drdrill")
    add_tools_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tools", "list", "--json", "--tools-dir", str(env["tools_dir"])])
    assert args.func(args) == 1  # most tools are missing
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(tools.load_manifest().tools)
    etcd = next(r for r in rows if r["name"] == "etcd")
    assert etcd["source"] == "dir" and len(etcd["sha256"]) == 64
    assert {r["source"] for r in rows if r["name"] != "etcd"} == {"missing"}


def test_tools_ensure_rejects_unknown_only(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="drdrill")
    add_tools_commands(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["tools", "ensure", "--only", "kubectl-fancy"])
    assert "invalid choice" in capsys.readouterr().err
