"""Small, composable waits with a deadline whose timeout error says what was last observed."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.errors import WaitTimeout

__all__ = ["Deadline", "WaitTimeout", "http_ok", "poll_until"]


@dataclass
class Deadline:
    """A point on the monotonic clock; retries and waits never run past it."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    start: float = field(init=False)

    def __post_init__(self) -> None:
        self.start = self.clock()

    @property
    def remaining(self) -> float:
        return max(0.0, self.start + self.seconds - self.clock())

    @property
    def expired(self) -> bool:
        return self.remaining <= 0

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start


def poll_until(
    probe: Callable[[], tuple[bool, str]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
    max_interval_s: float = 1.0,
    abort: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Call `probe` (-> done, observation) with backoff until done; return seconds waited.

    Only for things that cannot be watched (a process's HTTP health endpoint). `abort` runs each
    round and raises to stop early, e.g. when the process being waited on has died.
    """
    deadline = Deadline(timeout_s)
    observed = "not probed yet"
    delay = interval_s
    while True:
        if abort is not None:
            abort()
        done, observed = probe()
        if done:
            return deadline.elapsed
        if deadline.expired:
            raise WaitTimeout(
                f"{what}: not ready after {timeout_s:.0f}s; last observed: {observed}")
        sleep(min(delay, deadline.remaining))
        delay = min(delay * 1.5, max_interval_s)


def http_ok(url: str, ctx: ssl.SSLContext | None = None) -> tuple[bool, str]:
    """GET `url`; (True, summary) on HTTP 200. For loopback health endpoints."""
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:  # noqa: S310 - loopback
            body = resp.read(200).decode(errors="replace")
            return resp.status == 200, f"HTTP {resp.status}: {body}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read(300).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(exc)
