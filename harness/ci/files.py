"""Writing a CI file that drdrill owns: a header marks it as ours with a digest of its body, so
`drdrill init` rewrites its own untouched files and refuses anything else.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.errors import ForeignFileError

MARKER = "# Written by `drdrill init`"
_DIGEST = re.compile(r"^# drdrill-init-digest: sha256:([0-9a-f]{64})$", re.M)

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class Written:
    path: Path
    outcome: Outcome


def digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def with_header(header_lines: list[str], body: str) -> str:
    """The file: the marker, the header comments, the body's digest, then the body."""
    head = [f"{MARKER}. Re-run `drdrill init` to update it;",
            "# it refuses to overwrite this file once it is edited by hand (then remove it first).",
            *header_lines, f"# drdrill-init-digest: sha256:{digest(body)}"]
    return "\n".join(head) + "\n" + body


def check_ours(path: Path) -> None:
    """Raise ForeignFileError unless `path` is absent or an unedited file of ours."""
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    found = _DIGEST.search(text)
    if not text.startswith(MARKER) or found is None:
        raise ForeignFileError(
            f"{path} exists and was not written by drdrill init; not overwriting it",
            fix="move it away (or merge drdrill's job into it by hand: `drdrill init --dry-run`"
                " prints what drdrill would write)")
    body = text[text.index("\n", found.end()) + 1:] if "\n" in text[found.end():] else ""
    if digest(body) != found.group(1):
        raise ForeignFileError(
            f"{path} was written by drdrill init but edited since; not overwriting the edits",
            fix=f"remove {path} and run `drdrill init` again, or keep your version (compare "
                "with `drdrill init --dry-run`)")


def write_owned(path: Path, text: str) -> Written:
    """Write `text` to `path` if it is ours (check_ours); atomic, and a no-op when unchanged."""
    check_ours(path)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return Written(path, "unchanged")
    outcome: Outcome = "updated" if path.exists() else "created"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return Written(path, outcome)
