"""The one way drdrill runs an external program: build argv, log it, keep its output on failure."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.errors import CommandError

log = logging.getLogger(__name__)


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
        proc = subprocess.run(
            cmd.argv,
            env=cmd.full_env(),
            cwd=cmd.cwd,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=cmd.timeout_s,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CommandError(cmd.argv, None, "", str(exc), fix=fix) from exc
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        err = exc.stderr if isinstance(exc.stderr, str) else ""
        raise CommandError(cmd.argv, None, out,
                           f"{err}\n(timed out after {cmd.timeout_s}s)", fix=fix) from exc
    result = Result(tuple(cmd.argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandError(cmd.argv, proc.returncode, proc.stdout, proc.stderr, fix=fix)
    return result


def run_streaming(cmd: Command, sink: Path, *, fix: str | None = None,
                  on_line: Callable[[str], None] | None = None) -> None:
    """Run a long command (a Go build), teeing its combined output to `sink` and `on_line`."""
    log.debug("run: %s", " ".join(cmd.argv))
    sink.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    with sink.open("a", encoding="utf-8") as out:
        try:
            proc = subprocess.Popen(cmd.argv, env=cmd.full_env(), cwd=cmd.cwd, text=True,
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
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
    if rc != 0:
        raise CommandError(cmd.argv, rc, "", "".join(tail), fix=fix)
