"""Chart version constraints as HelmReleases write them (Masterminds semver, which Flux uses):
exact, `*`, comparisons, `^`, `~`, `x` wildcards, `,`/space for AND and `||` for OR."""

from __future__ import annotations

import re
from collections.abc import Iterable

_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?"
                      r"(?:\+[0-9A-Za-z.-]+)?$")
_TERM = re.compile(r"^(>=|<=|!=|>|<|=|\^|~>?)?\s*v?([0-9xX*]+(?:\.[0-9xX*]+){0,2}"
                   r"(?:-[0-9A-Za-z.-]+)?)$")

Key = tuple[int, int, int, tuple[tuple[int, int | str], ...]]


def parse(text: str) -> Key | None:
    m = _VERSION.match(text.strip())
    if not m:
        return None
    pre: tuple[tuple[int, int | str], ...] = tuple(
        (0, int(p)) if p.isdigit() else (1, p) for p in (m.group(4) or "").split(".") if p)
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), pre


def _sort_key(v: Key) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    # A release sorts after its pre-releases.
    return v[0], v[1], v[2], 0 if v[3] else 1, v[3]


def _term_ok(term: str, v: Key) -> bool:
    m = _TERM.match(term)
    if not m:
        raise ValueError(f"cannot read version constraint {term!r}")
    op, raw = m.group(1) or "=", m.group(2)
    parts = raw.split("-")[0].split(".")
    wild = next((i for i, p in enumerate(parts) if p in ("x", "X", "*")), len(parts))
    nums = [int(p) for p in parts[:wild]] + [0] * (3 - wild)
    base = (nums[0], nums[1], nums[2])
    cur = (v[0], v[1], v[2])
    if op == "=":
        return cur[:wild] == base[:wild]  # missing parts and x are wildcards
    if op in ("~", "~>"):
        return cur[:1 if len(parts) == 1 else 2] == base[:1 if len(parts) == 1 else 2] \
            and cur >= base
    if op == "^":
        first = next((i for i, n in enumerate(base) if n), 2)
        return cur[:first + 1] == base[:first + 1] and cur >= base
    return {"!=": cur != base, ">": cur > base, "<": cur < base,
            ">=": cur >= base, "<=": cur <= base}[op]


def best(constraint: str, versions: Iterable[str]) -> str | None:
    """The highest version satisfying `constraint` ('' or '*': the highest release)."""
    text = constraint.strip()
    parsed = [(v, k) for v in versions if (k := parse(v)) is not None]
    if text and parse(text) is not None and not text.startswith(("v", "=")):
        exact = [v for v, k in parsed if k == parse(text)]
        return exact[0] if exact else None
    alternatives = [a.strip() for a in text.split("||")] if text and text != "*" else [""]
    fits: list[tuple[str, Key]] = []
    for v, k in parsed:
        for alt in alternatives:
            terms = [t for t in re.split(r"[,\s]+", re.sub(r"(>=|<=|!=|>|<|=|\^|~>?)\s+", r"\1",
                                                           alt)) if t and t != "*"]
            if k[3] and not any("-" in t for t in terms):
                continue  # pre-releases only when the constraint names one
            if all(_term_ok(t, k) for t in terms):
                fits.append((v, k))
                break
    return max(fits, key=lambda vk: _sort_key(vk[1]))[0] if fits else None
