"""Serve one commit of the repository under test over Git smart HTTP on loopback.

The repository is copied into a bare repo that holds a single branch pointing at the commit
under test; `git http-backend` (real Git) answers the protocol behind a small threaded server.
Pushes are accepted to other branches only (image-automation-controller pushes here, never to
a real remote); the branch under test cannot move, so the revision a drill waits for holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from harness.command import Command, run
from harness.errors import CommandError, GitServerError, NotAGitRepoError

log = logging.getLogger(__name__)

REPO_NAME = "repo.git"


@dataclass(frozen=True)
class RepoRevision:
    path: Path
    """Top of the Git work tree."""
    sha: str
    branch: str
    identity: str = ""
    """Who the repo is wherever it is cloned: its remote (`host/owner/name`) or its folder name
    (`repo_identity`); trends group runs by it, never by the local path."""


def repo_identity(remote_url: str | None, top: Path) -> str:
    """`github.com/org/fleet` for any spelling of a remote (https, ssh, scp-like; credentials,
    port and `.git` dropped); the work tree's folder name when the repo has no remote."""
    url = (remote_url or "").strip()
    if not url:
        return top.name
    if "://" not in url and ":" in url.split("/", 1)[0]:  # scp-like: git@host:org/repo
        user_host, _, path = url.partition(":")
        host = user_host.rpartition("@")[2]
    else:
        parts = urlsplit(url)
        if parts.scheme == "file" or not parts.hostname:
            return Path(parts.path or url).name.removesuffix(".git") or top.name
        host, path = parts.hostname, parts.path
    path = path.strip("/").removesuffix(".git").removesuffix("/")
    return f"{host.lower()}/{path}" if path else host.lower()


def _remote_url(git: str, top: str) -> str | None:
    """origin's URL, else the first remote's; None without remotes."""
    try:
        names = run(Command.of(git, "-C", top, "remote")).stdout.split()
    except CommandError:
        return None
    if not names:
        return None
    name = "origin" if "origin" in names else names[0]
    try:
        return run(Command.of(git, "-C", top, "remote", "get-url", name)).stdout.strip() or None
    except CommandError:
        return None


def resolve_revision(repo: Path, revision: str = "HEAD") -> RepoRevision:
    """Find the work tree top and the full commit SHA of `revision`; fail clearly if not Git."""
    if not repo.is_dir():
        raise NotAGitRepoError("repository path does not exist or is not a folder", file=repo,
                               fix="pass --repo a folder holding a Git work tree")
    git = shutil.which("git")
    if git is None:
        raise GitServerError("git is not installed", fix="install Git (apt-get install git)")
    try:
        top = run(Command.of(git, "-C", str(repo), "rev-parse", "--show-toplevel")).stdout.strip()
    except CommandError as exc:
        raise NotAGitRepoError("not a Git repository", file=repo,
                               fix="run `git init` and commit the Flux manifests, or pass --repo "
                                   "a Git work tree") from exc
    try:
        sha = run(Command.of(git, "-C", top, "rev-parse", "--verify", "--end-of-options",
                             f"{revision}^{{commit}}")).stdout.strip()
    except CommandError as exc:
        raise NotAGitRepoError(f"revision {revision!r} is not a commit in this repository",
                               file=top, fix="commit the manifests first (git commit), or pass "
                                             "--revision an existing commit") from exc
    return RepoRevision(Path(top), sha, "main", repo_identity(_remote_url(git, top), Path(top)))


def make_bare_copy(rev: RepoRevision, dest: Path) -> Path:
    """A bare repository in `dest` whose only branch `rev.branch` is the commit under test."""
    bare = dest / REPO_NAME
    bare.parent.mkdir(parents=True, exist_ok=True)
    run(Command.of("git", "init", "--quiet", "--bare", f"--initial-branch={rev.branch}",
                   str(bare)))
    # --no-verify: the user's pre-push hooks have no business in a drill.
    run(Command.of("git", "-C", str(rev.path), "push", "--quiet", "--no-verify", str(bare),
                   f"{rev.sha}:refs/heads/{rev.branch}"))
    run(Command.of("git", "-C", str(bare), "config", "http.receivepack", "true"))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(PRE_RECEIVE.format(ref=f"refs/heads/{rev.branch}"))
    hook.chmod(0o755)
    return bare


PRE_RECEIVE = """#!/bin/sh
# drdrill: the branch under test is the revision the drill waits for; nothing in the cluster may
# move it. Pushes over HTTP (git http-backend sets REMOTE_ADDR) are the cluster's; the drill's own
# local pushes (a scenario's new commit, which it then waits for) come without it.
[ -n "$REMOTE_ADDR" ] || exit 0
while read old new ref; do
  if [ "$ref" = "{ref}" ]; then
    echo "drdrill: $ref is the revision under test; push to another branch" >&2
    exit 1
  fi
done
"""


class _Handler(BaseHTTPRequestHandler):
    server: _GitHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("git-http %s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _backend(self) -> None:
        parts = urlsplit(self.path)
        if self.command == "POST" and parts.path.endswith("/git-receive-pack"):
            self.server.pushes += 1
        body = self._body() if self.command == "POST" else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.server.root),
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            if header in self.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                              capture_output=True, check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key.strip(), value.strip()))
        if proc.returncode != 0 and status == 200:
            log.warning("git http-backend failed: %s", proc.stderr.decode(errors="replace"))
            status = 500
        self.server.requests += 1
        self._reply(status, payload, headers)

    def _reply(self, status: int, payload: bytes,
               headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for key, value in headers or [("Content-Type", "text/plain")]:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    requests: int = 0
    pushes: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cut kept-alive client connections too: an outage must not spare them."""
        with self._open_lock:
            conns = list(self.open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class GitServer:
    """`with GitServer(rev, workdir) as srv:` serves `srv.url` until the block ends."""

    def __init__(self, rev: RepoRevision, workdir: Path, host: str = "127.0.0.1") -> None:
        self.rev = rev
        self.workdir = workdir
        self.host = host
        self._httpd: _GitHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._paused_port: int | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise GitServerError("the Git server is not running")
        return f"http://{self.host}:{self._httpd.server_address[1]}/{REPO_NAME}"

    @property
    def requests(self) -> int:
        return self._httpd.requests if self._httpd else 0

    @property
    def running(self) -> bool:
        return self._httpd is not None and self.bare_repo.is_dir()

    def branches(self) -> list[str]:
        """The branches of the served repository (the one under test, and any pushed)."""
        out = run(Command.of("git", "-C", str(self.bare_repo), "for-each-ref",
                             "--format=%(refname:short)", "refs/heads/")).stdout
        return sorted(line.strip() for line in out.splitlines() if line.strip())

    @property
    def pushes(self) -> int:
        """Pushes received (to branches other than the one under test)."""
        return self._httpd.pushes if self._httpd else 0

    def start(self) -> GitServer:
        make_bare_copy(self.rev, self.workdir)
        try:
            httpd = _GitHTTPServer((self.host, 0), _Handler)
        except OSError as exc:
            raise GitServerError(f"cannot listen on {self.host}: {exc}") from exc
        httpd.root = self.workdir
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="git-http", daemon=True)
        self._thread.start()
        return self

    def pause(self) -> int:
        """Stop answering (a Git outage) but keep the repository and the port; returns it."""
        if self._httpd is None:
            raise GitServerError("the Git server is not running")
        port = int(self._httpd.server_address[1])
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.drop_connections()
        self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._paused_port = port
        return port

    def resume(self) -> GitServer:
        """Serve again on the port it had before `pause()` (the URL Flux holds stays valid)."""
        port = self._paused_port
        if port is None:
            raise GitServerError("the Git server was not paused")
        try:
            httpd = _GitHTTPServer((self.host, port), _Handler)
        except OSError as exc:
            raise GitServerError(f"cannot listen on {self.host}:{port} again: {exc}") from exc
        httpd.root = self.workdir
        self._httpd = httpd
        self._paused_port = None
        self._thread = threading.Thread(target=httpd.serve_forever, name="git-http", daemon=True)
        self._thread.start()
        return self

    @property
    def bare_repo(self) -> Path:
        """The served bare repository (scenarios commit to it: a bad change, a revert)."""
        return self.workdir / REPO_NAME

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        shutil.rmtree(self.workdir / REPO_NAME, ignore_errors=True)

    def __enter__(self) -> GitServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
