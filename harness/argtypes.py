"""argparse value types shared by drdrill's commands: bad numbers fail with a clear message."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{raw!r} must be more than 0 seconds")
    return value


def non_negative(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} must not be negative")
    return value


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} must be at least 1")
    return value


_GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")


def go_duration(raw: str) -> str:
    """A duration as Go's flag package reads it (`30s`, `1m30s`): checked here, in a second,
    not by a controller that prints its flag usage after a cluster was provisioned."""
    if not _GO_DURATION.fullmatch(raw):
        hint = f"; did you mean {raw}s?" if raw.replace(".", "", 1).isdigit() else ""
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a Go duration (a number with its unit, e.g. 2s, 500ms, 1m){hint}")
    return raw


_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@[^:]+:)", re.IGNORECASE)


def local_repo(raw: str) -> Path:
    """A local Git work tree; a URL is refused with the way to get one."""
    if _URL.match(raw):
        raise argparse.ArgumentTypeError(
            f"{raw} is a URL; --repo takes a local Git work tree. Clone it first: "
            f"`git clone {raw} fleet && drdrill drill --repo fleet`")
    return Path(raw)
