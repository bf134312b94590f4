"""Build pinned binaries from the Go module proxy with the machine's Go, and read Go build info.

One wrapper module per build family, one `go build` per family, one build at a time per
family across processes (an fcntl lock in the cache).
"""

from __future__ import annotations

import fcntl
import json
import logging
import mmap
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.command import Command, run, run_streaming

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

@dataclass(frozen=True)
class Overlay:
    """`file` of `module`@`version` is compiled as `content` (a `go build -overlay` entry)."""

    module: str
    version: str
    file: str
    content: str


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


@contextmanager
def file_lock(path: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive fcntl lock on `path`; call `on_wait` once if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --- Go build info --------------------------------------------------------------------------

_BUILDINFO_MAGIC = b"\xff Go buildinf:"


@dataclass(frozen=True)
class BuildInfo:
    """What `go version -m` shows: the Go release, the main module and the dependencies."""

    go_version: str
    path: str
    main: tuple[str, str]
    deps: dict[str, str] = field(hash=False)
    """module path -> version (as required; a replacement's version is in `replaced`)."""
    replaced: dict[str, str] = field(hash=False, default_factory=dict)
    settings: dict[str, str] = field(hash=False, default_factory=dict)

    def module_version(self, module: str) -> str | None:
        """The version `module` was built at, or None if the binary does not say."""
        version = self.main[1] if self.main[0] == module else self.deps.get(module)
        return None if version in (None, "", "(devel)") else version


def _uvarint(buf: bytes | mmap.mmap, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint overflow")


def _varbytes(buf: bytes | mmap.mmap, pos: int) -> tuple[bytes, int]:
    length, pos = _uvarint(buf, pos)
    if length > 1 << 20 or pos + length > len(buf):
        raise ValueError("string out of range")
    return bytes(buf[pos:pos + length]), pos + length


def parse_modinfo(go_version: str, modinfo: str) -> BuildInfo:
    """Parse the text `runtime/debug.BuildInfo.String()` produces (sentinels stripped)."""
    path = ""
    main = ("", "")
    deps: dict[str, str] = {}
    replaced: dict[str, str] = {}
    settings: dict[str, str] = {}
    last_dep = ""
    for line in modinfo.splitlines():
        cols = line.split("\t")
        kind = cols[0]
        if kind == "path" and len(cols) > 1:
            path = cols[1]
        elif kind == "mod" and len(cols) > 2:
            main = (cols[1], cols[2])
        elif kind == "dep" and len(cols) > 2:
            deps[cols[1]] = cols[2]
            last_dep = cols[1]
        elif kind == "=>" and len(cols) > 1 and last_dep:
            replaced[last_dep] = " ".join(c for c in cols[1:3] if c)
        elif kind == "build" and len(cols) > 1:
            key, _, value = cols[1].partition("=")
            settings[key] = value
    return BuildInfo(go_version, path, main, deps, replaced, settings)


def _parse_at(buf: bytes | mmap.mmap, at: int) -> BuildInfo | None:
    if at + 32 > len(buf):
        return None
    flags = buf[at + 15]
    if not flags & 0x2:
        return None  # pre-Go-1.18 pointer layout: not worth supporting for pinned modern tools
    try:
        version, pos = _varbytes(buf, at + 32)
        modinfo, _ = _varbytes(buf, pos)
    except (ValueError, IndexError):
        return None
    if not version.startswith(b"go"):
        return None
    # modinfo is wrapped in 16-byte sentinels so the linker can find it.
    if len(modinfo) >= 33 and modinfo[-17] == ord("\n"):
        modinfo = modinfo[16:-16]
    return parse_modinfo(version.decode("utf-8", "replace"), modinfo.decode("utf-8", "replace"))


def read_build_info(binary: Path) -> BuildInfo | None:
    """The Go build info embedded in `binary`, or None if it has none (not Go, or stripped)."""
    with binary.open("rb") as fh:
        try:
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            return None
        with buf:
            at = buf.find(_BUILDINFO_MAGIC)
            while at != -1:
                # The magic string also appears as data in programs that import debug/buildinfo;
                # only the real header parses.
                info = _parse_at(buf, at)
                if info is not None:
                    return info
                at = buf.find(_BUILDINFO_MAGIC, at + 1)
    return None


def copy_files(files: Sequence[Path], dest: Path) -> list[Path]:
    """Copy `files` into `dest` as writable regular files (module-cache files are read-only)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in files:
        target = dest / src.name
        shutil.copyfile(src, target)
        out.append(target)
    return out
