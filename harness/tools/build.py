"""Build pinned binaries from the Go module proxy with the machine's Go (the last resort).

One wrapper module per build family, one `go build` per family, one build at a time per
family across processes (an fcntl lock in the cache). The Flux CRDs come from the same proxy.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.command import Command, run, run_streaming
from harness.config import Config
from harness.errors import CommandError, ToolBuildError, ToolNotFoundError
from harness.tools.manifest import FLUX_CRDS_DIR, BuildPlan, ToolSpec, load_manifest
from harness.tools.resolve import (
    Unusable,
    cache_path,
    file_lock,
    from_cache,
    install_into_cache,
)

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

HEARTBEAT_S = 20.0
"""How often a running build reports `go:` progress lines to the progress callback."""


# --- Go itself ------------------------------------------------------------------------------

def find_go(go: str) -> str | None:
    """The absolute path of the Go program `go` names (a name on PATH or a path), or None."""
    if os.sep in go:
        return go if os.access(go, os.X_OK) and Path(go).is_file() else None
    return shutil.which(go)


def go_version(go: str) -> str:
    """The Go release `go` is, e.g. "1.26.8" (`go env GOVERSION` says "go1.26.8")."""
    out = run(Command.of(go, "env", "GOVERSION").with_timeout(30)).stdout.strip()
    return out.removeprefix("go")


def version_tuple(version: str) -> tuple[int, ...]:
    """"1.26.0" / "go1.26rc1" / "v3.6.16" -> comparable ints (pre-release suffixes dropped)."""
    nums = re.findall(r"\d+", version.removeprefix("go").split("-")[0])
    parts = [int(n) for n in nums[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def module_dir(go: str, module: str, version: str, *, cwd: Path) -> Path:
    """Download `module@version` into GOMODCACHE (if needed) and return its extracted folder."""
    cmd = (Command.of(go, "mod", "download", "-json", f"{module}@{version}")
           .with_env(GOWORK="off", GO111MODULE="on", GOFLAGS="").in_dir(cwd).with_timeout(600))
    info = json.loads(run(cmd, fix="check network access to the Go module proxy "
                                   "(GOPROXY) and that the module version exists").stdout)
    return Path(info["Dir"])


# --- the wrapper module and the build -------------------------------------------------------

@dataclass
class _Counter:
    """What the build has said so far; read by the heartbeat thread."""

    packages: int = 0
    downloads: int = 0
    last: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def see(self, line: str) -> None:
        with self.lock:
            if line.startswith("go: downloading"):
                self.downloads += 1
            elif line and not line.startswith(("go:", "#", " ")):
                self.packages += 1
            if line.strip():
                self.last = line.strip()

    def summary(self) -> str:
        with self.lock:
            return (f"{self.packages} packages compiled, {self.downloads} modules downloaded"
                    + (f"; last: {self.last[:100]}" if self.last else ""))


@contextmanager
def _heartbeat(progress: Progress, label: str, counter: _Counter,
               every_s: float = HEARTBEAT_S) -> Iterator[None]:
    """Report `go: ...` progress every `every_s` while the body runs (builds are quiet)."""
    stop = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not stop.wait(every_s):
            elapsed = int(time.monotonic() - start)
            progress(f"go: {label}: {elapsed // 60}m{elapsed % 60:02d}s, {counter.summary()}")

    thread = threading.Thread(target=beat, name=f"gobuild-{label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def build(plan: BuildPlan, *, go: str, workdir: Path, out_dir: Path, log_path: Path,
          progress: Progress) -> dict[str, Path]:
    """Run the family's `go get` + `go build` in `workdir`; return name -> built binary.

    Output goes to `log_path`; on failure a CommandError (argv, rc, log tail) propagates.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    patched = _patched_modules(plan, go, workdir) if plan.overlay else []
    (workdir / "go.mod").write_text(plan.go_mod(patched), encoding="utf-8")
    # GOFLAGS is replaced, not extended: a user's -mod=readonly would stop the wrapper resolving.
    env = {"GOFLAGS": "-mod=mod", "GOWORK": "off", "GO111MODULE": "on"}
    with log_path.open("a", encoding="utf-8") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} build {plan.family} "
                 f"{plan.version} with {go}\n--- go.mod\n{plan.go_mod(patched)}\n")
    counter = _Counter()
    with _heartbeat(progress, f"{plan.family} {plan.version}", counter):
        cmd = (Command.of(go, "get", *(f"{mod}@{ver}" for mod, ver in plan.require))
               .with_env(**env).in_dir(workdir))
        run_streaming(cmd, log_path, on_line=counter.see)
        cmd = Command(tuple(plan.build_argv(go, out_dir)), env=env, cwd=workdir)
        with log_path.open("a", encoding="utf-8") as fh:
            fh.write("--- " + " ".join(cmd.argv) + "\n")
        run_streaming(cmd, log_path, on_line=counter.see)
    built = {name: plan.output_path(out_dir, name) for name in plan.names}
    for name, path in built.items():
        if not path.is_file():
            raise FileNotFoundError(f"go build succeeded but {path} (for {name}) is missing")
    return built


def _patched_modules(plan: BuildPlan, go: str, workdir: Path) -> list[str]:
    """Copy each overlaid module out of GOMODCACHE (Go refuses `-overlay` of files there),
    write our version of the file into the copy; return the go.mod replace lines for them."""
    replaces: list[str] = []
    for module in dict.fromkeys(o.module for o in plan.overlay):
        entries = [o for o in plan.overlay if o.module == module]
        root = module_dir(go, module, entries[0].version, cwd=workdir)
        copy = workdir / "patched" / module.replace("/", "_")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(root, copy, copy_function=shutil.copyfile)  # modcache files are 0444
        for folder in (copy, *(d for d in copy.rglob("*") if d.is_dir())):
            folder.chmod(0o755)  # copytree copied the cache's 0555 folders: keep it removable
        for entry in entries:
            (copy / entry.file).write_text(entry.content, encoding="utf-8")
        replaces.append(f"{module} => ./{copy.relative_to(workdir).as_posix()}")
    return replaces


def copy_files(files: Sequence[Path], dest: Path) -> list[Path]:
    """Copy `files` into `dest` as writable regular files (module-cache files are read-only)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in files:
        target = dest / src.name
        shutil.copyfile(src, target)
        out.append(target)
    return out


# --- a family into the cache ----------------------------------------------------------------

def not_found(config: Config, spec: ToolSpec, missing: list[str], why: str) -> ToolNotFoundError:
    """The error for a tool that is nowhere and cannot be built, with every way to supply it."""
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


def usable_go(config: Config, spec: ToolSpec, missing: list[str]) -> str:
    """The Go program to build `spec` with, or ToolNotFoundError with both fixes."""
    if not config.allow_build:
        raise not_found(config, spec, missing, "building is turned off (DRDRILL_ALLOW_BUILD)")
    go = find_go(config.go)
    if go is None:
        raise not_found(config, spec, missing, f"Go ({config.go!r}) is not installed")
    return go


def check_go_release(config: Config, go: str, spec: ToolSpec, missing: list[str],
                     progress: Progress) -> None:
    """Fail (GOTOOLCHAIN=local) or say so when `go` is older than the family needs."""
    need = load_manifest().families[spec.family].go
    have = go_version(go)
    if version_tuple(have) >= version_tuple(need):
        return
    if os.environ.get("GOTOOLCHAIN", "auto").startswith("local"):
        raise not_found(config, spec, missing,
                        f"{go} is Go {have}, older than {need}, and GOTOOLCHAIN=local")
    progress(f"note: {go} is Go {have}; Go will fetch a go{need}+ toolchain for family "
             f"{spec.family} (GOTOOLCHAIN)")


def build_family(config: Config, family: str, go: str, progress: Progress) -> list[str]:
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

    with file_lock(lock, on_wait=waiting):
        if all(from_cache(config, s) is not None for s in specs):
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
                built = build(plan, go=go, workdir=workdir, out_dir=out_dir,
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
    try:
        install_into_cache(config, spec, built)
    except Unusable as why:
        raise ToolBuildError(
            f"built {spec.name} but it is unusable: {why.reason} (build log: {log_path})",
            tool=spec.name, version=spec.version,
            fix="the manifest's ldflags or version_regex may be wrong for this version") from None


# --- the Flux CRDs --------------------------------------------------------------------------

def yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.is_file())


def fetch_flux_crds(config: Config, target: Path, progress: Progress) -> list[Path]:
    """Download the pinned Flux CRDs from the Go module proxy into `target` (under a lock)."""
    manifest = load_manifest()
    version = manifest.flux_crds_version
    why = ("downloading is turned off (DRDRILL_ALLOW_BUILD)" if not config.allow_build
           else f"Go ({config.go!r}) is not installed")
    go = find_go(config.go) if config.allow_build else None
    if go is None:
        raise ToolNotFoundError(
            f"the Flux {version} CRDs were not found in {target} and cannot be downloaded: {why}",
            tool=FLUX_CRDS_DIR, version=version,
            fix=f"copy the CRD YAML files of Flux {version} (config/crd/bases of "
                "source-, kustomize- and helm-controller) into DIR/flux-crds/ and pass "
                "--tools-dir DIR (or set DRDRILL_TOOLS_DIR); or install Go so drdrill can "
                "download them from the Go module proxy")
    lock = config.tools_cache / "locks" / f"{FLUX_CRDS_DIR}-{version}.lock"
    with file_lock(lock, on_wait=lambda: progress(f"waiting for another drdrill fetching "
                                                   f"the Flux {version} CRDs")):
        if files := yaml_files(target):
            return files
        progress(f"fetching the Flux {version} CRDs from the Go module proxy")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            for src in manifest.flux_crds:
                try:
                    root = module_dir(go, src.module, src.version, cwd=staging)
                except CommandError as exc:
                    raise ToolBuildError(
                        f"could not download {src.module}@{src.version} for the Flux CRDs: "
                        f"{exc}", tool=FLUX_CRDS_DIR, version=version, fix=exc.fix) from exc
                found = yaml_files(root / src.dir)
                if not found:
                    raise ToolBuildError(f"{src.module}@{src.version} has no YAML in {src.dir}",
                                         tool=FLUX_CRDS_DIR, version=version)
                copy_files(found, staging)
            staging.replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return yaml_files(target)
