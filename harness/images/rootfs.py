"""Image building blocks with no registry: a Debian rootfs made by debootstrap (cached by its
recipe), a subset of its installed packages, `docker import`, and docker-archive tarballs
written directly (`ctr import` and `kind load image-archive` read them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ImageBuildError

DEFAULT_MIRROR = "http://deb.debian.org/debian"


def mirror() -> str:
    """The Debian mirror; deliberately not part of any recipe hash (same packages either way)."""
    return os.environ.get("DRDRILL_DEBIAN_MIRROR", DEFAULT_MIRROR)


def digest(obj: object) -> str:
    """A short, stable content hash of a JSON-able recipe."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock, so two sessions never build the same image at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Debootstrap:
    """What decides a Debian rootfs: suite, variant and the packages asked for."""

    suite: str
    variant: str
    packages: tuple[str, ...]

    def key(self) -> str:
        return digest({"suite": self.suite, "variant": self.variant,
                       "packages": sorted(self.packages)})


def _run_logged(argv: Sequence[str], log: Path, *, timeout: float, what: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ImageBuildError(f"{what} timed out after {timeout:.0f}s", log=log) from None
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-12:]
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}):\n    "
                              + "\n    ".join(tail), log=log)


def debootstrap_rootfs(spec: Debootstrap, cache_dir: Path, log: Path) -> Path:
    """A Debian rootfs folder for `spec`, built once into `cache_dir` and reused.

    The folder is complete when its `.complete` marker exists; a build killed midway leaves a
    temp folder that the next build removes (it holds the lock).
    """
    target = cache_dir / f"rootfs-{spec.suite}-{spec.key()}"
    if (target / ".complete").exists():
        return target
    with file_lock(cache_dir / "locks" / f"{target.name}.lock"):
        if (target / ".complete").exists():
            return target
        if shutil.which("debootstrap") is None:
            raise ImageBuildError("debootstrap is not installed",
                                  fix="apt-get install debootstrap")
        for stale in cache_dir.glob(f".{target.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
        try:
            _run_logged(["debootstrap", f"--variant={spec.variant}",
                         f"--include={','.join(spec.packages)}", spec.suite, str(work),
                         mirror()], log, timeout=1800, what=f"debootstrap {spec.suite}")
            shutil.rmtree(work / "var/lib/apt/lists", ignore_errors=True)
            shutil.rmtree(work / "var/cache/apt/archives", ignore_errors=True)
            (work / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
            (work / ".complete").write_text(json.dumps({"suite": spec.suite,
                                                        "packages": list(spec.packages)}))
            work.rename(target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return target


# --- package subsets -------------------------------------------------------------------------

def _installed(rootfs: Path) -> dict[str, list[str]]:
    """Installed package -> the names it depends on (Pre-Depends + Depends; first alternative)."""
    deps: dict[str, list[str]] = {}
    text = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" not in fields or "installed" not in fields.get("Status", ""):
            continue
        names = []
        for rel in (fields.get("Pre-Depends", ""), fields.get("Depends", "")):
            for part in filter(None, (p.strip() for p in rel.split(","))):
                first = part.split("|")[0].strip()
                names.append(re.split(r"[\s(:]", first, maxsplit=1)[0])
        deps[fields["Package"]] = names
    return deps


def package_closure(rootfs: Path, names: Iterable[str]) -> list[str]:
    """`names` and everything they depend on, as installed in `rootfs` (sorted)."""
    deps = _installed(rootfs)
    todo = list(names)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in deps:
            continue
        seen.add(name)
        todo.extend(deps[name])
    return sorted(seen)


def copy_packages(rootfs: Path, names: Iterable[str], dest: Path) -> None:
    """Copy the files of the installed packages `names` (no dependencies added) into `dest`."""
    info = rootfs / "var/lib/dpkg/info"
    for name in names:
        lists = [info / f"{name}.list", info / f"{name}:amd64.list"]
        listing = next((p for p in lists if p.exists()), None)
        if listing is None:
            raise ImageBuildError(f"package {name} is not installed in {rootfs}")
        for line in listing.read_text().splitlines():
            rel = line.lstrip("/")
            if not rel or rel == ".":
                continue
            src, dst = rootfs / rel, dest / rel
            if src.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.is_symlink() and not dst.exists():
                    dst.symlink_to(src.readlink())
                resolved = src.resolve()
                if resolved.is_dir() and resolved.is_relative_to(rootfs.resolve()):
                    # merged /usr: /lib64 -> usr/lib64 must not dangle in `dest`
                    (dest / resolved.relative_to(rootfs.resolve())).mkdir(parents=True,
                                                                         exist_ok=True)
            elif src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            elif src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    _copy_alternatives(rootfs, dest)


def _copy_alternatives(rootfs: Path, dest: Path) -> None:
    """update-alternatives' links (not in any package's file list), e.g. /usr/sbin/iptables ->
    /etc/alternatives/iptables -> /usr/sbin/iptables-nft, for the targets `dest` holds."""
    alternatives = rootfs / "etc/alternatives"
    if not alternatives.is_dir():
        return
    for folder in ("usr/sbin", "usr/bin"):
        src_dir = rootfs / folder
        if not src_dir.is_dir():
            continue
        for link in src_dir.iterdir():
            if not link.is_symlink():
                continue
            target = str(link.readlink())
            if not target.startswith("/etc/alternatives/"):
                continue
            alt = alternatives / Path(target).name
            if not alt.is_symlink() or not (dest / str(alt.readlink()).lstrip("/")).exists():
                continue
            for path, to in ((dest / "etc/alternatives" / alt.name, alt.readlink()),
                             (dest / folder / link.name, Path(target))):
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.is_symlink() and not path.exists():
                    path.symlink_to(to)


# --- images ----------------------------------------------------------------------------------

def write_files(root: Path, files: Mapping[str, tuple[str | bytes, int]]) -> None:
    """Write path -> (content, mode) under `root`, replacing (never editing) what is there."""
    for rel, (content, mode) in files.items():
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        path.chmod(mode)


def docker_import(root: Path, tag: str, *, changes: Sequence[str], log: Path,
                  timeout: float = 900) -> None:
    """`docker import` the folder `root` as image `tag` (numeric owners, one layer)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = ["docker", "import", *[a for c in changes for a in ("--change", c)], "-", tag]
    with log.open("ab") as out:
        out.write(f"\n$ tar -C {root} -c . | {' '.join(argv)}\n".encode())
        out.flush()
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner",
                                "--exclude=./.complete", "-c", "."],
                               stdout=subprocess.PIPE, stderr=out)
        assert tar.stdout is not None
        try:
            imp = subprocess.run(argv, stdin=tar.stdout, stdout=out, stderr=out,
                                 timeout=timeout, check=False)
        finally:
            tar.stdout.close()
            tar.wait()
    if imp.returncode != 0 or tar.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise ImageBuildError(f"docker import of {tag} failed: {' / '.join(tail)}", log=log)


def image_exists(tag: str) -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True,
                          check=False).returncode == 0


def _layer_tar(root: Path, dest: Path) -> str:
    """Tar `root` into `dest` (owned by root, numeric ids); -> the layer's sha256 (diff id)."""
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "--owner=0", "--group=0",
                    "--sort=name", "--mtime=@0", "-cf", str(dest), "."], check=True,
                   capture_output=True)
    h = hashlib.sha256()
    with dest.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_docker_archive(root: Path, dest: Path, *, tags: Sequence[str],
                         entrypoint: Sequence[str] | None = None,
                         cmd: Sequence[str] | None = None,
                         env: Mapping[str, str] | None = None,
                         labels: Mapping[str, str] | None = None, user: str = "") -> None:
    """Write a one-layer image of folder `root` as a `docker save`-format tarball at `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layer-", dir=dest.parent) as tmp:
        layer = Path(tmp) / "layer.tar"
        diff_id = _layer_tar(root, layer)
        config = {
            "architecture": "amd64", "os": "linux",
            "config": {"Env": [f"{k}={v}" for k, v in (env or {}).items()],
                       "Entrypoint": list(entrypoint) if entrypoint else None,
                       "Cmd": list(cmd) if cmd else None, "User": user,
                       "Labels": dict(labels or {})},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
            "history": [{"created_by": "drdrill harness.images.rootfs"}],
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        manifest = [{"Config": config_name, "RepoTags": list(tags),
                     "Layers": [f"{diff_id}/layer.tar"]}]
        part = dest.with_name(dest.name + ".part")
        with tarfile.open(part, "w") as out:
            def add_bytes(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
            add_bytes(config_name, config_bytes)
            out.add(layer, arcname=f"{diff_id}/layer.tar")
            add_bytes("manifest.json", json.dumps(manifest).encode())
        part.replace(dest)
