"""Read the Go build info a binary carries (what `go version -m` shows), without running Go.

A pinned tool that prints no version (the Flux controllers) is identified by the version of its
module in this record.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path

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


