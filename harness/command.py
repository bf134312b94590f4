"""The one way drdrill runs an external program: build argv, log it, keep its output on failure.

Each program runs in its own process group. When the drill is interrupted (or the program times
out) while it runs, the whole group is killed, not only the program drdrill started: a `kind`,
`git` or shell wrapper leaves no grandchild behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.errors import CommandError

log = logging.getLogger(__name__)

_running: set[subprocess.Popen[str]] = set()
_running_lock = threading.Lock()


@dataclass(frozen=True)
class Command:
    """An immutable argv plus environment and working directory; `.arg()` returns a new one."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    timeout_s: float | None = None

    @classmethod
    def of(cls, *argv: str | os.PathLike[str]) -> Command:
        return cls(tuple(os.fspath(a) for a in argv))

    def arg(self, *more: str | os.PathLike[str]) -> Command:
        return replace(self, argv=self.argv + tuple(os.fspath(a) for a in more))

    def with_env(self, **env: str) -> Command:
        return replace(self, env={**self.env, **env})

    def in_dir(self, cwd: Path) -> Command:
        return replace(self, cwd=cwd)

    def with_timeout(self, seconds: float) -> Command:
        return replace(self, timeout_s=seconds)

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run(cmd: Command, *, check: bool = True, input_text: str | None = None,
        fix: str | None = None) -> Result:
    """Run `cmd` to completion, logging argv; raise CommandError with its output on failure."""
    log.debug("run: %s", " ".join(cmd.argv))
    try:
        proc = subprocess.Popen(
            cmd.argv, env=cmd.full_env(), cwd=cmd.cwd, text=True, start_new_session=True,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise CommandError(cmd.argv, None, "", str(exc), fix=fix) from exc
    with _running_lock:
        _running.add(proc)
    try:
        stdout, stderr = proc.communicate(input_text, timeout=cmd.timeout_s)
    except subprocess.TimeoutExpired as exc:
        kill_group(proc)
        stdout, stderr = proc.communicate()
        raise CommandError(cmd.argv, None, stdout or "",
                           f"{stderr or ''}\n(timed out after {cmd.timeout_s}s)", fix=fix) from exc
    except BaseException:  # an interrupt: the program and everything it started go too
        kill_group(proc)
        proc.wait()
        raise
    finally:
        with _running_lock:
            _running.discard(proc)
    result = Result(tuple(cmd.argv), proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise CommandError(cmd.argv, proc.returncode, stdout, stderr, fix=fix)
    return result


def stop_all() -> int:
    """Kill every program `run` is waiting on, in any thread (an interrupt arrived: a worker
    thread's `kustomize build` must not hold the drill up); -> how many."""
    with _running_lock:
        procs = list(_running)
        for proc in procs:
            kill_group(proc)
    return len(procs)


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the process group `proc` leads (it is not reaped yet, so the id is still ours)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_streaming(cmd: Command, sink: Path, *, fix: str | None = None,
                  on_line: Callable[[str], None] | None = None) -> None:
    """Run a long command (a Go build), teeing its combined output to `sink` and `on_line`."""
    log.debug("run: %s", " ".join(cmd.argv))
    sink.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    with sink.open("a", encoding="utf-8") as out:
        try:
            proc = subprocess.Popen(cmd.argv, env=cmd.full_env(), cwd=cmd.cwd, text=True,
                                    start_new_session=True, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except FileNotFoundError as exc:
            raise CommandError(cmd.argv, None, "", str(exc), fix=fix) from exc
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                tail = [*tail, line][-40:]
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            rc = proc.wait()
        except BaseException:
            kill_group(proc)
            proc.wait()
            raise
        finally:
            proc.stdout.close()
    if rc != 0:
        raise CommandError(cmd.argv, rc, "", "".join(tail), fix=fix)
