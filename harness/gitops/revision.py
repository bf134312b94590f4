"""The commit under test as files: `git archive` of one revision into a temporary folder, so
preflight reads what Flux would get, never the working tree. Offline: no cluster code."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.command import Command, run
from harness.errors import CommandError, MissingPathError, NotAGitRepoError


@dataclass(frozen=True)
class Committed:
    path: Path
    """The exported folder standing for the `repo` argument (a subfolder of a Git repo stays
    that subfolder)."""
    sha: str
    uncommitted: tuple[str, ...]
    """Paths below `repo` whose working-tree state differs from the commit (not read)."""


def _git(repo: Path, *args: str) -> str:
    return run(Command.of("git", "-C", str(repo), *args).with_timeout(60)).stdout


@contextmanager
def committed(repo: Path, revision: str = "HEAD") -> Iterator[Committed]:
    """`with committed(repo, "HEAD~1") as c:` -> the files of that commit below `repo`."""
    if not repo.is_dir():
        raise NotAGitRepoError("repository path does not exist or is not a folder", file=repo,
                               fix="pass --repo a folder holding a Git work tree")
    try:
        prefix = _git(repo, "rev-parse", "--show-prefix").strip()
        top = _git(repo, "rev-parse", "--show-toplevel").strip()
    except CommandError as exc:
        raise NotAGitRepoError(
            "not a Git repository: Flux syncs commits, so there is nothing it would get",
            file=repo, fix="run `git init` and commit the Flux manifests") from exc
    try:
        sha = _git(repo, "rev-parse", "--verify", "--end-of-options",
                   f"{revision}^{{commit}}").strip()
    except CommandError as exc:
        raise NotAGitRepoError(f"revision {revision!r} is not a commit in this repository",
                               file=repo, fix="commit the manifests first (git commit), or "
                                              "pass --revision an existing commit") from exc
    if prefix:
        try:
            _git(repo, "cat-file", "-e", f"{sha}:{prefix}")
        except CommandError as exc:
            raise MissingPathError(f"{prefix.rstrip('/')} does not exist at {revision} "
                                   f"({sha[:12]})", file=repo, obj=None,
                                   fix="pass a --revision that has it, or commit it") from exc
    status = _git(repo, "status", "--porcelain", "--untracked-files=all", "--", ".")
    dirty = tuple(line[3:] for line in status.splitlines() if line.strip()) \
        if revision == "HEAD" else ()
    tmp = Path(tempfile.mkdtemp(prefix="drdrill-commit-"))
    try:
        archive = tmp / "commit.tar"
        # `<commit>:<subfolder>` archives the folder `repo` names as the archive's root.
        run(Command.of("git", "-C", top, "archive", "--format=tar", "-o", str(archive),
                       f"{sha}:{prefix}" if prefix else sha).with_timeout(120))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "tree", filter="data")
        archive.unlink()
        tree = tmp / "tree"
        tree.mkdir(exist_ok=True)
        yield Committed(tree, sha, dirty)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["Committed", "committed"]
