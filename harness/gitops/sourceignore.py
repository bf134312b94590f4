"""Which files of a Git source reach kustomize-controller: source-controller's default excludes
plus every `.sourceignore` (gitignore syntax, relative to its folder) and `spec.ignore`."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# fluxcd/pkg/sourceignore: ExcludeVCS, ExcludeExt, ExcludeCI, ExcludeExtra.
DEFAULT_EXCLUDES = (
    ".git/", ".gitignore", ".gitmodules", ".gitattributes",
    "*.jpg", "*.jpeg", "*.gif", "*.png", "*.wmv", "*.flv", "*.tar.gz", "*.zip",
    ".github/", ".circleci/", ".travis.yml", ".gitlab-ci.yml", "appveyor.yml", ".drone.yml",
    "cloudbuild.yaml", "codeship-services.yml", "codeship-steps.yml",
    "**/.goreleaser.yml", "**/.sops.yaml", "**/.flux.yaml",
)
IGNORE_FILE = ".sourceignore"


@dataclass(frozen=True)
class _Rule:
    base: str
    """Repo-relative folder the pattern is relative to ('' for the top)."""
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _compile(pattern: str, base: str) -> _Rule | None:
    line = pattern.rstrip()
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    anchored = "/" in line
    line = line.lstrip("/")
    parts = []
    for i, seg in enumerate(line.split("/")):
        if seg == "**":
            parts.append("(?:.*/)?" if i < len(line.split("/")) - 1 else ".*")
            continue
        parts.append(fnmatch.translate(seg).replace(r"\Z", "").removeprefix("(?s:")
                     .removesuffix(")").replace(".*", "[^/]*") + "/")
    body = "".join(parts).rstrip("/").replace("(?:.*/)?/", "(?:.*/)?")
    prefix = "" if anchored else "(?:.*/)?"
    return _Rule(base, re.compile(f"^{prefix}{body}$"), negate, dir_only)


class Ignore:
    """Gitignore-style matching with the rules of every `.sourceignore` met on the way down."""

    def __init__(self, patterns: Iterable[str] = DEFAULT_EXCLUDES) -> None:
        self.rules = [r for p in patterns if (r := _compile(p, "")) is not None]

    def add_file(self, path: Path, base: str) -> None:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            rule = _compile(line, base)
            if rule is not None:
                self.rules.append(rule)

    def ignored(self, rel: str, *, is_dir: bool) -> bool:
        verdict = False
        for r in self.rules:
            if r.base and not (rel == r.base or rel.startswith(r.base + "/")):
                continue
            sub = rel[len(r.base) + 1:] if r.base else rel
            if r.dir_only and not is_dir:
                continue
            if r.regex.match(sub):
                verdict = not r.negate
        return verdict


def source_files(top: Path, extra: Iterable[str] = (), *, sourceignore: bool = True,
                 ) -> list[str]:
    """Repo-relative paths of the files source-controller would put in the artifact (with
    `sourceignore=False`, also what `.sourceignore` keeps out: bootstrap material lives there)."""
    ignore = Ignore((*DEFAULT_EXCLUDES, *extra))
    out: list[str] = []
    for root, dirs, files in os.walk(top):
        rel_root = os.path.relpath(root, top)
        rel_root = "" if rel_root == "." else rel_root
        if sourceignore and IGNORE_FILE in files:
            ignore.add_file(Path(root) / IGNORE_FILE, rel_root)
        dirs[:] = sorted(d for d in dirs if not ignore.ignored(
            f"{rel_root}/{d}" if rel_root else d, is_dir=True))
        for f in sorted(files):
            rel = f"{rel_root}/{f}" if rel_root else f
            if not ignore.ignored(rel, is_dir=False):
                out.append(rel)
    return out
