"""Runs one or more commands one after another and writes each output line with its arrival
time (CLOCK_MONOTONIC, shared by every process on the machine), so a peer's "ready" is timed
where it is printed, not where the benchmark gets round to reading it.

    python -m harness.bench.stamp OUT -- ARGV_JSON [ARGV_JSON ...]

OUT gets JSON lines: {"t", "line"} per output line, {"t", "start": argv} and {"t", "exit": rc}.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TextIO


def _write(out: TextIO, record: dict[str, object]) -> None:
    out.write(json.dumps({"t": time.monotonic(), **record}) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    commands = [json.loads(a) for a in args[2:]]
    child: list[subprocess.Popen[str]] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        for c in child:
            c.terminate()
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    rc = 0
    with Path(args[0]).open("a", encoding="utf-8") as out:
        for cmd in commands:
            _write(out, {"start": cmd})
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, bufsize=1)
            child[:] = [proc]
            assert proc.stdout is not None
            for line in proc.stdout:
                _write(out, {"line": line.rstrip("\n")})
            rc = proc.wait()
            _write(out, {"exit": rc})
            if rc != 0:
                break
    return rc


if __name__ == "__main__":
    sys.exit(main())
