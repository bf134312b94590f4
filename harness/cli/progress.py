"""The drill's console: one live status line on a terminal; in a CI log, a status line at most
every 15 s plus one line per object that becomes ready or fails, each phase in a foldable group
(GitHub Actions `::group::`, GitLab CI sections). Every line goes through the redaction step.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Literal, TextIO

from harness.report.redact import redact

STATUS_PREFIXES = ("converge:", "build:", "go:")
"""Lines that restate a state (the live line on a terminal; throttled in a log)."""
LOG_STATUS_EVERY_S = 15.0
WIDTH = 150
"""The live line is cut here so it never wraps (a wrapped line cannot be redrawn)."""

Folding = Literal["github", "gitlab", "none"]


def ci_folding(env: Mapping[str, str] | None = None) -> Folding:
    """Which CI's foldable groups the log supports, from its well-known variables."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true":
        return "github"
    if env.get("GITLAB_CI") == "true":
        return "gitlab"
    return "none"


class Progress:
    """Callable with one line; `phase` is a drill listener (start/end of each phase)."""

    def __init__(self, stream: TextIO = sys.stderr, *, tty: bool | None = None,
                 folding: Folding | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.folding = ci_folding() if folding is None else folding
        self.clock = clock
        self.wall = wall
        self.t0 = clock()
        self._live = ""          # the status line on screen (terminal)
        self._held = ""          # the newest status not yet printed (log)
        self._last_status_at: float | None = None
        self._group: str | None = None
        self._sections = 0

    def _stamp(self) -> str:
        return f"[{self.clock() - self.t0:6.1f}s]"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def __call__(self, line: str) -> None:
        line = redact(line)
        if line.startswith(STATUS_PREFIXES):
            self._status(line)
        else:
            self._line(line)

    def _status(self, line: str) -> None:
        if self.tty:
            self._live = f"{self._stamp()} {line}"[:WIDTH]
            self._write(f"\r\x1b[2K{self._live}")
            return
        now = self.clock()
        if self._last_status_at is None or now - self._last_status_at >= LOG_STATUS_EVERY_S:
            self._last_status_at = now
            self._held = ""
            self._write(f"{self._stamp()} {line}\n")
        else:
            self._held = line  # said when the phase ends, or when 15 s have passed

    def _line(self, line: str) -> None:
        if line.startswith(("ready:", "failed:")):
            self._held = ""  # an object line is newer than the status held back
        if self.tty and self._live:
            # Print above the live line, then draw it again below.
            self._write(f"\r\x1b[2K{self._stamp()} {line}\n{self._live}")
            return
        self._write(f"{self._stamp()} {line}\n")

    def _flush_held(self) -> None:
        if self._held:
            self._write(f"{self._stamp()} {self._held}\n")
            self._held = ""
            self._last_status_at = self.clock()

    def _end_live(self) -> None:
        if self.tty and self._live:
            self._write("\n")
            self._live = ""

    def phase(self, event: str, record: object) -> None:
        kind, _, name = event.partition(":")
        if kind == "start":
            self._end_live()
            self._open(f"phase {name}")
            self(f"phase {name} ...")
            return
        if record is None:
            return
        self._end_live()
        self._flush_held()
        self(f"phase {name} (round {getattr(record, 'round', '?')}): "
             f"{getattr(record, 'outcome', '?')} in {getattr(record, 'duration_s', 0):.1f}s")
        self._close()

    def _open(self, title: str) -> None:
        self._close()
        if self.folding == "github":
            self._write(f"::group::{title}\n")
        elif self.folding == "gitlab":
            self._sections += 1
            section = f"drdrill_{re.sub(r'[^a-z0-9_]', '_', title.lower())}_{self._sections}"
            self._write(f"\x1b[0Ksection_start:{int(self.wall())}:{section}[collapsed=true]"
                        f"\r\x1b[0K{title}\n")
            self._group = section
            return
        self._group = title if self.folding == "github" else None

    def _close(self) -> None:
        if self._group is None:
            return
        if self.folding == "github":
            self._write("::endgroup::\n")
        elif self.folding == "gitlab":
            self._write(f"\x1b[0Ksection_end:{int(self.wall())}:{self._group}\r\x1b[0K\n")
        self._group = None

    def close(self) -> None:
        """End the live line and any open group (before the summary is printed)."""
        self._end_live()
        self._flush_held()
        self._close()
