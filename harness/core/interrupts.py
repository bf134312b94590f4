"""SIGINT, SIGTERM and SIGHUP end a drill: each raises DrillInterrupted (a BaseException, so no
best-effort `except Exception` can swallow it), and the engine asks again at every phase
boundary, so an interrupt that some library did swallow still stops the drill there.

From the first signal on, and while the report and teardown run, further signals are noted and
ignored: the drill is already stopping, and teardown must finish, or processes and containers
would be left behind (kubetest2 traps ^C the same way). A second ^C while the first is being
reported can therefore not escape half-way through the report.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from harness.errors import DrillInterrupted

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""SIGHUP too: a CI runner whose log stream closes sends it, and it means the same as a cancel."""


class Interrupts:
    """`with Interrupts() as sig:` turns the signals into DrillInterrupted in the main thread
    (elsewhere Python cannot install handlers, and the caller's own handling stays)."""

    def __init__(self, say: Callable[[str], None] | None = None,
                 on_first: Callable[[], None] | None = None) -> None:
        self.received: list[str] = []
        self._on_first = on_first
        """Called in the handler before the first interrupt is raised: stop what runs in other
        threads (their programs), which the exception cannot reach."""
        self._say = say or (lambda line: log.warning("%s", line))
        self._old: dict[int, Any] = {}
        self._ignoring = False

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if self._ignoring or len(self.received) > 1:
            why = "teardown is running" if self._ignoring else \
                f"the drill is stopping ({self.received[0]})"
            self._say(f"{name} ignored: {why} and must finish "
                      "(`drdrill gc` cleans up after a kill -9)")
            return
        if self._on_first is not None:
            try:
                self._on_first()
            except Exception:  # the interrupt itself must still be raised
                log.warning("stopping running programs failed", exc_info=True)
        raise DrillInterrupted(name)

    @property
    def first(self) -> str | None:
        """The signal that stopped the drill, if one did."""
        return self.received[0] if self.received else None

    def check(self) -> None:
        """Raise DrillInterrupted if a signal arrived whose exception was swallowed on its way
        up (called at every phase boundary)."""
        if self.received and not self._ignoring:
            raise DrillInterrupted(self.received[0])

    def ignore(self) -> None:
        """Note and ignore every further signal, until the handlers are restored (the engine
        calls this first thing when the run ends: report and teardown must finish)."""
        self._ignoring = True

    @contextlib.contextmanager
    def ignored(self) -> Iterator[None]:
        """Note and ignore signals for the duration."""
        self._ignoring = True
        try:
            yield
        finally:
            self._ignoring = False
