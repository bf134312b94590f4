"""`drdrill tools pack` / `unpack`: the resolved pinned tools and Flux CRDs as one archive with
a manifest of sha256 sums, for a CI cache or an air-gapped machine. Unpacking checks every sum
and every version before anything lands in the cache.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.errors import ChecksumMismatch, ToolError, ToolNotFoundError
from harness.tools.manifest import FLUX_CRDS_DIR, TOOL_NAMES, load_manifest, pins_digest
from harness.tools.resolve import (
    Unusable,
    file_lock,
    install_into_cache,
    resolve_existing,
    sha256_file,
)

log = logging.getLogger(__name__)

INDEX = "drdrill-pack.json"
Progress = Callable[[str], None]


def pack(config: Config, out: Path, names: Iterable[str] | None = None, *,
         progress: Progress = lambda _: None) -> dict[str, Any]:
    """Write `out` (.tar.gz) with every named tool (default: `tools ensure`'s set) as it resolves
    now, never building; ToolNotFoundError names what is missing."""
    manifest = load_manifest()
    wanted = list(dict.fromkeys(names if names is not None else TOOL_NAMES))
    index: dict[str, Any] = {"schema": 1, "pins": pins_digest(), "tools": [], "flux_crds": None}
    missing = []
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        for name in wanted:
            found = resolve_existing(config, manifest.tools[name])
            if found is None:
                missing.append(name)
                continue
            arc = f"tools/{name}/{found.version}/{name}"
            tar.add(found.path, arcname=arc)
            index["tools"].append({"name": name, "version": found.version, "path": arc,
                                   "sha256": found.sha256})
            progress(f"packed {name} {found.version} ({found.source})")
        crds = config.tools_cache / FLUX_CRDS_DIR / manifest.flux_crds_version
        files = sorted(crds.glob("*.y*ml"))
        if files:
            index["flux_crds"] = {"version": manifest.flux_crds_version, "files": [
                {"path": f"tools/{FLUX_CRDS_DIR}/{manifest.flux_crds_version}/{f.name}",
                 "sha256": sha256_file(f)} for f in files]}
            for f in files:
                tar.add(f, arcname=f"tools/{FLUX_CRDS_DIR}/{manifest.flux_crds_version}/{f.name}")
        if missing:
            raise ToolNotFoundError(f"cannot pack {', '.join(missing)}: not in the tools folder, "
                                    "on PATH or in the cache", tool=missing[0], version="",
                                    fix="run `drdrill tools ensure` first")
        data = json.dumps(index, indent=2).encode()
        info = tarfile.TarInfo(INDEX)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return index


def unpack(config: Config, archive: Path, *, progress: Progress = lambda _: None) -> list[str]:
    """Check and install an archive of `pack` into the cache; return the tools installed."""
    manifest = load_manifest()
    installed: list[str] = []
    staging_root = config.tools_cache / "download"
    staging_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging_root) as tmp, \
            tarfile.open(archive, "r:*") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        if INDEX not in members:
            raise ToolError(f"{archive} has no {INDEX}: not made by `drdrill tools pack`",
                            tool="pack", version="")
        index = json.loads(_read(tar, members[INDEX]))
        if index.get("pins") != pins_digest():
            progress(f"note: {archive} was packed with other pins ({index.get('pins')}); "
                     "only tools at this drdrill's versions are used")
        checked = []
        for entry in index.get("tools") or ():  # every sum first: all or nothing
            spec = manifest.tools.get(entry["name"])
            if spec is None or spec.version != entry["version"]:
                progress(f"skipping {entry['name']} {entry['version']}: not pinned here")
                continue
            checked.append((spec, entry, _checked(tar, members, entry["path"], entry["sha256"],
                                                  Path(tmp), archive)))
        crds = index.get("flux_crds")
        staged = Path(tmp) / "crds"
        staged.mkdir()
        if crds and crds.get("version") == manifest.flux_crds_version:
            for f in crds["files"]:
                _checked(tar, members, f["path"], f["sha256"], staged, archive)
        for spec, entry, fresh in checked:
            with file_lock(config.tools_cache / "locks" / f"{spec.name}-{spec.version}.lock"):
                try:
                    install_into_cache(config, spec, fresh, trust_unverifiable=True)
                except Unusable as why:
                    raise ToolError(f"{entry['path']} in {archive} is unusable: {why.reason}",
                                    tool=spec.name, version=spec.version) from None
            installed.append(spec.name)
            progress(f"unpacked {spec.name} {spec.version}")
        if crds and crds.get("version") == manifest.flux_crds_version:
            target = config.tools_cache / FLUX_CRDS_DIR / manifest.flux_crds_version
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(staged, target)
            progress(f"unpacked the Flux {manifest.flux_crds_version} CRDs")
    return installed


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    src = tar.extractfile(member)
    assert src is not None
    with src:
        return src.read()


def _checked(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], path: str, sha: str,
             dest: Path, archive: Path) -> Path:
    """Extract one member into `dest` (by its base name) and check its sha256."""
    member = members.get(path)
    if member is None:
        raise ToolError(f"{archive} lists {path} but does not hold it", tool="pack", version="")
    out = dest / Path(path).name
    src = tar.extractfile(member)
    assert src is not None
    with src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    out.chmod(0o755)
    got = sha256_file(out)
    if got != sha:
        raise ChecksumMismatch(f"{path} in {archive} has sha256 {got}, but the pack's index says "
                               f"{sha}: corrupt or altered, nothing from it was installed",
                               tool=Path(path).name, version="")
    return out
