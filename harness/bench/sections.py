"""Benchmark sections beyond the built-in ones, added in one call: a measure (options in, a
JSON-able result out) and a renderer (that result and the machine's core count in, Markdown
lines out). `drdrill bench --sections NAME` runs it; its result is `result[NAME]`, and its
lines come after the built-in sections' in the table.

    register_section("kind-mirror", measure=cold_warm_rows, render=kind_mirror_table)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Section:
    name: str
    measure: Callable[[Any, Callable[[str], None]], Any]
    """(BenchOptions, say) -> the section's result."""
    render: Callable[[Any, int], Sequence[str]]
    """(the section's result, cores) -> Markdown lines."""


REGISTERED: dict[str, Section] = {}


def register_section(name: str, *, measure: Callable[[Any, Callable[[str], None]], Any],
                     render: Callable[[Any, int], Sequence[str]]) -> None:
    """Add a section; a name already taken (built in or registered) is an error."""
    from harness.bench.run import SECTIONS

    if name in SECTIONS or name in REGISTERED:
        raise ValueError(f"benchmark section {name!r} exists already")
    REGISTERED[name] = Section(name, measure, render)


def _register_extensions() -> None:
    """Sections that live with their subject (harness/mirror/bench.py: cold/warm mirror)."""
    from harness.mirror.bench import register

    register()


_register_extensions()
