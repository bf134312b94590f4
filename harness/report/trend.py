"""Trends across drills: time-to-ready per phase of the recovery round and the manual-step count,
run after run, read from the `*/report.json` files a history folder keeps (`reports/` by default).

Regression rule (what `drdrill report trend` exits 1 for):
    Runs are grouped by scenario, provider, repo and cluster (the repo by its remote or name,
    never by the local path, so a CI workspace that moves is the same repo), and every group is
    checked. A group's latest run's time-to-ready (TTR) is compared with the median TTR of the
    group's previous runs, taking the last `window` (default 7) of
    those that converged. It is a REGRESSION when the latest TTR is above that median by more
    than `threshold` percent (default 20) AND by more than `floor` seconds (default 5): both,
    so a 3 s repo that takes 4 s does not flap, and a 20 min rebuild that takes 4 s longer is
    not news. At least 2 previous converged runs are needed to compare at all. A latest run that
    did not converge has no TTR and is not called a regression: its own verdict already failed.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.report.html import (
    PHASE_COLOUR,
    nice_number_step,
    nice_step,
    short_seconds,
    truncate,
)
from harness.report.markdown import cell, fmt_seconds
from harness.report.model import SCHEMA_VERSION
from harness.report.redact import redact, write_report_file

READABLE_VERSIONS = (1, SCHEMA_VERSION)
"""Schema 2 only added fields: schema-1 reports stay in the trend."""

THRESHOLD_PCT = 20.0
FLOOR_S = 5.0
WINDOW = 7
MIN_BASELINE = 2
SHOWN = 30
"""The chart and the table show the most recent runs only; the rule needs no more."""

SVG_NAME = "trend.svg"
MARKDOWN_NAME = "trend.md"

# Phases of the recovery round that lie inside time-to-ready, in drill order.
TTR_PHASES = ("provision", "bootstrap", "converge")


Key = tuple[str, str, str, str]
"""(scenario, provider, repo identity, cluster)."""


@dataclass(frozen=True)
class RunPoint:
    """One drill as the trend sees it."""

    run_id: str
    started_at: dt.datetime
    verdict: str
    ttr_s: float | None
    phases: Mapping[str, float]
    """Seconds per phase of the recovery round (`TTR_PHASES` only)."""
    manual_steps: int
    """Manual steps in the recovery round."""
    key: Key
    """(scenario, provider, repo, cluster): runs with another key are not compared."""
    path: Path
    figure: tuple[str, float | None] | None = None
    """The scenario's headline recovery figure (label, seconds); schema 2 reports only."""
    rto_s: float | None = None
    error: str = ""
    """The first line of the drill's error, if it had one."""


@dataclass(frozen=True)
class Check:
    """The regression rule applied to one run against the runs before it."""

    point: RunPoint
    baseline: tuple[RunPoint, ...]
    median_s: float | None
    limit_s: float | None
    regression: bool
    reason: str

    @property
    def delta_s(self) -> float | None:
        if self.median_s is None or self.point.ttr_s is None:
            return None
        return self.point.ttr_s - self.median_s


@dataclass
class History:
    points: list[RunPoint] = field(default_factory=list)
    """Every readable run, oldest first."""
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def groups(self) -> dict[Key, list[RunPoint]]:
        """The runs of each scenario/provider/repo/cluster, oldest first."""
        out: dict[Key, list[RunPoint]] = {}
        for point in self.points:
            out.setdefault(point.key, []).append(point)
        return out


@dataclass(frozen=True)
class GroupTrend:
    """One scenario/provider/repo/cluster: its runs and the rule applied to each."""

    key: Key
    points: tuple[RunPoint, ...]
    checks: tuple[Check, ...]

    @property
    def latest(self) -> Check:
        return self.checks[-1]

    @property
    def regression(self) -> bool:
        return self.latest.regression

    @property
    def title(self) -> str:
        scenario, provider, repo, cluster = self.key
        return f"{scenario} on {provider}, {repo}" + (f" {cluster}" if cluster else "")


# -- reading --------------------------------------------------------------------------------

def load_history(history: Path, *, warn: Callable[[str], None] = lambda _: None) -> History:
    """Every readable `report.json` below `history`, ordered by `started_at`.

    Unreadable files and other schema versions are skipped with a `warn` line each.
    """
    out = History()
    points: list[RunPoint] = []
    for path in sorted(history.rglob("report.json")):
        try:
            points.append(parse_report(path))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            out.skipped.append((path, reason))
            warn(f"skipping {path}: {reason}")
    points.sort(key=lambda p: (p.started_at, p.run_id))
    out.points = points
    return out


def repo_key(data: Mapping[str, object]) -> str:
    """The repo as trends know it: `repo_id` (its remote or name); for reports written before
    it existed, the last element of the `repo` path (the folder name), never the whole path."""
    repo_id = data.get("repo_id")
    if isinstance(repo_id, str) and repo_id:
        return repo_id
    repo = str(data.get("repo") or "").rstrip("/")
    return repo.rsplit("/", 1)[-1].removesuffix(".git") if repo else ""


def parse_report(path: Path) -> RunPoint:
    """A RunPoint from one report.json; ValueError says what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError("not a drdrill report (a JSON object was expected)")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"schema_version {version!r}, this drdrill reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    started = _when(data.get("started_at"))
    ttr = data.get("time_to_ready_s")
    if ttr is not None and not _number(ttr):
        raise ValueError(f"time_to_ready_s is {ttr!r}, not a number")
    recovery = data.get("recovery_round", 2)
    phases: dict[str, float] = {}
    for p in data.get("phases") or ():
        if (isinstance(p, Mapping) and p.get("round") == recovery and p.get("name") in TTR_PHASES
                and _number(p.get("duration_s"))):
            phases[str(p["name"])] = phases.get(str(p["name"]), 0.0) + float(p["duration_s"])
    steps = [m for m in data.get("manual_steps") or ()
             if isinstance(m, Mapping) and m.get("round", 1) == recovery]
    fig = data.get("recovery_figure")
    figure = (str(fig.get("label") or fig.get("name")),
              float(fig["value_s"]) if _number(fig.get("value_s")) else None) \
        if isinstance(fig, Mapping) else None
    return RunPoint(
        run_id=str(data.get("run_id") or path.parent.name), started_at=started,
        verdict=str(data.get("verdict", "?")), ttr_s=None if ttr is None else float(ttr),
        phases=phases, manual_steps=len(steps),
        key=(str(data.get("scenario", "")), str(data.get("provider", "")),
             repo_key(data), str(data.get("cluster", ""))),
        path=path, figure=figure,
        rto_s=float(data["rto_target_s"]) if _number(data.get("rto_target_s")) else None,
        error=next(iter(str(data.get("error") or "").strip().splitlines()), ""))


def _number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _when(raw: object) -> dt.datetime:
    if not isinstance(raw, str):
        raise ValueError(f"started_at is {raw!r}, not an ISO-8601 time")
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"started_at {raw!r} is not an ISO-8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


# -- the rule -------------------------------------------------------------------------------

def check(points: Sequence[RunPoint], index: int = -1, *, threshold_pct: float = THRESHOLD_PCT,
          floor_s: float = FLOOR_S, window: int = WINDOW) -> Check:
    """Apply the regression rule (module docstring) to `points[index]`."""
    index = index % len(points)
    point = points[index]
    baseline = tuple(p for p in points[:index] if p.ttr_s is not None)[-window:]
    if point.ttr_s is None:
        return Check(point, baseline, None, None, False,
                     f"no time-to-ready (verdict {point.verdict}); nothing to compare")
    if len(baseline) < MIN_BASELINE:
        return Check(point, baseline, None, None, False,
                     f"{len(baseline)} earlier converged run(s); at least {MIN_BASELINE} needed "
                     "to compare")
    median = statistics.median(p.ttr_s for p in baseline if p.ttr_s is not None)
    limit = max(median * (1 + threshold_pct / 100), median + floor_s)
    delta = point.ttr_s - median
    pct = f"{delta / median:+.0%}" if median else "n/a"
    words = (f"{fmt_seconds(point.ttr_s)} vs median {fmt_seconds(median)} of the previous "
             f"{len(baseline)} run(s): {pct} ({'+' if delta >= 0 else ''}{fmt_seconds(delta)})")
    if point.ttr_s > limit:
        return Check(point, baseline, median, limit, True,
                     f"REGRESSION: {words}; more than {threshold_pct:g}% and more than "
                     f"{fmt_seconds(floor_s)} over the median")
    return Check(point, baseline, median, limit, False,
                 f"ok: {words}; a regression needs more than {fmt_seconds(limit)} "
                 f"(+{threshold_pct:g}% and +{fmt_seconds(floor_s)})")


# -- outputs --------------------------------------------------------------------------------

def rule_text(threshold_pct: float = THRESHOLD_PCT, floor_s: float = FLOOR_S,
              window: int = WINDOW) -> str:
    return (f"A regression is a time-to-ready more than {threshold_pct:g}% and more than "
            f"{fmt_seconds(floor_s)} over the median of the previous {window} converged runs "
            f"(at least {MIN_BASELINE} needed).")


def trend_groups(history: History, *, threshold_pct: float = THRESHOLD_PCT,
                 floor_s: float = FLOOR_S, window: int = WINDOW) -> list[GroupTrend]:
    """Every group with the rule applied to each of its runs; regressions first, then the
    group with the newest run first."""
    out = []
    for key, points in history.groups().items():
        checks = tuple(check(points, i, threshold_pct=threshold_pct, floor_s=floor_s,
                             window=window) for i in range(len(points)))
        out.append(GroupTrend(key, tuple(points), checks))
    out.sort(key=lambda g: g.points[-1].started_at, reverse=True)
    out.sort(key=lambda g: not g.regression)  # stable: newest first within each half
    return out


def render_markdown(history: History, groups: Sequence[GroupTrend], rule: str = "") -> str:
    """One table of runs (newest last) per group, regressions first."""
    regressions = sum(g.regression for g in groups)
    lines = ["## drdrill trend", "",
             f"{len(history.points)} run(s) in {len(groups)} group(s) (scenario, provider, "
             f"repo, cluster); " + (f"**{regressions} regression(s)**" if regressions
                                    else "no regression"), ""]
    for group in groups:
        lines += _group_markdown(group)
    notes = [rule] if rule else []
    if history.skipped:
        notes.append(f"{len(history.skipped)} unreadable report(s) skipped.")
    lines += [" ".join(notes)] if notes else []
    return redact("\n".join(lines).rstrip("\n") + "\n")


def _group_markdown(group: GroupTrend) -> list[str]:
    points = group.points
    shown = list(zip(points, group.checks, strict=True))[-SHOWN:]
    latest = group.latest
    scenario, provider, repo, cluster = group.key
    lines = [f"### `{scenario}` on `{provider}`, repo `{repo}`"
             + (f", cluster `{cluster}`" if cluster else ""), "",
             f"{len(points)} run(s)" + (f", the last {len(shown)} shown"
                                       if len(shown) < len(points) else "") + ". "
             + (f"**{latest.reason}**" if latest.regression else latest.reason), ""]
    label = next((p.figure[0] for p in reversed(points) if p.figure), None)
    header = ["Started (UTC)", "Run", "Verdict", "TTR", *TTR_PHASES, "Manual steps",
              *([label] if label else []), "vs median"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for p, c in shown:
        delta = c.delta_s
        vs = "" if delta is None or c.median_s is None else (
            f"{'+' if delta >= 0 else ''}{fmt_seconds(delta)} "
            f"({delta / c.median_s:+.0%})" if c.median_s else f"{fmt_seconds(delta)}")
        if c.regression:
            vs = f"**{vs} REGRESSION**"
        row = [p.started_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M"), f"`{p.run_id}`",
               p.verdict, fmt_seconds(p.ttr_s) if p.ttr_s is not None else "not converged",
               *(fmt_seconds(p.phases[n]) if n in p.phases else "" for n in TTR_PHASES),
               str(p.manual_steps),
               *([_figure_cell(p)] if label else []), vs]
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return [*lines, ""]


def _figure_cell(p: RunPoint) -> str:
    if p.figure is None:
        return ""
    return fmt_seconds(p.figure[1]) if p.figure[1] is not None else "not reached"


def render_svg(groups: Sequence[GroupTrend]) -> str:
    """One panel per group, stacked in the order given (regressions first)."""
    parts: list[str] = []
    offset = 0.0
    for group in groups:
        inner, height = _panel(group)
        parts.append(f'<g transform="translate(0,{offset:.0f})">{inner}</g>')
        offset += height
    title = "drdrill trend: " + "; ".join(g.title for g in groups[:3]) + (
        f" and {len(groups) - 3} more" if len(groups) > 3 else "")
    return redact(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SVG_WIDTH:.0f} {offset:.0f}" '
        f'width="{SVG_WIDTH:.0f}" height="{offset:.0f}" role="img"><title>{_esc(title)}</title>'
        f'<style>{_SVG_CSS}</style><rect width="100%" height="100%" fill="#fff"/>'
        f'{"".join(parts)}</svg>\n')


SVG_WIDTH = 1000.0
CHAR_W = 6.4
"""Width of one character of the 11 px labels, to keep labels from overlapping."""


def _panel(group: GroupTrend) -> tuple[str, float]:
    """TTR per phase of the recovery round as stacked bars (one per run, oldest left), the
    median and limit of the rule for the newest run, and the manual-step count under it."""
    points = list(group.points)[-SHOWN:]
    checks = list(group.checks)[-SHOWN:]
    width, left, right = SVG_WIDTH, 70.0, 130.0
    top, ttr_h, gap, steps_h, label_h = 84.0, 260.0, 58.0, 90.0, 70.0
    height = top + ttr_h + gap + steps_h + label_h
    plot = width - left - right
    slot = plot / max(len(points), 1)
    bar = min(44.0, slot * 0.7)
    latest = checks[-1] if checks else None
    values = [*(p.ttr_s or 0.0 for p in points), *(sum(p.phases.values()) for p in points), 1.0]
    if latest and latest.limit_s:
        values.append(latest.limit_s)
    extent = max(values) * 1.12
    base_y = top + ttr_h

    def cx(i: int) -> float:
        return left + slot * (i + 0.5)

    def y(v: float) -> float:
        return base_y - ttr_h * v / extent

    def inside(x: float, chars: int) -> float:
        """A centred label's x, moved so it stays over the plot (off the side labels)."""
        half = chars * CHAR_W / 2 + 2
        return min(max(x, left + half), width - right - half)

    out: list[str] = []
    title = group.title
    out.append(f'<text x="{left}" y="22" class="t">{_esc(title)}</text>')
    if latest is not None:
        out.append(f'<text x="{left}" y="44" class="{"bad" if latest.regression else "val"}">'
                   f"{_esc(truncate(latest.reason, 150))}</text>")
    out.append(f'<text x="{left}" y="{top - 14}" class="h">time-to-ready per phase of the '
               f"recovery round</text>")
    legend = [(PHASE_COLOUR[name], name) for name in TTR_PHASES]
    lx = width - right
    for colour, name in [*reversed(legend)]:
        lx -= 14 + 7 * len(name) + 14
        out.append(f'<rect x="{lx:.0f}" y="{top - 24}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{lx + 14:.0f}" y="{top - 15}" class="tick">{name}</text>')
    lx -= 110
    out.append(f'<circle cx="{lx + 5:.0f}" cy="{top - 19}" r="3.5" class="dot"/>'
               f'<text x="{lx + 14:.0f}" y="{top - 15}" class="tick">time-to-ready</text>')
    step = nice_step(extent, 5)
    for k in range(int(extent // step) + 1):
        yv = y(k * step)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{yv:.1f}" y2="{yv:.1f}" '
                   f'class="grid"/><text x="{left - 6}" y="{yv + 4:.1f}" class="tick" '
                   f'text-anchor="end">{short_seconds(k * step)}</text>')
    # Value labels only where they fit: every k-th run, the newest always among them.
    widest = max((len(fmt_seconds(p.ttr_s)) for p in points if p.ttr_s is not None), default=6)
    label_every = max(1, math.ceil((widest * CHAR_W + 6) / slot))
    for i, (p, c) in enumerate(zip(points, checks, strict=True)):
        x0 = cx(i) - bar / 2
        labelled = (len(points) - 1 - i) % label_every == 0 or c.regression
        acc = 0.0
        faded = "" if p.ttr_s is not None else ' opacity="0.45"'
        for name in TTR_PHASES:
            d = p.phases.get(name, 0.0)
            if d > 0:
                out.append(f'<rect x="{x0:.1f}" y="{y(acc + d):.1f}" width="{bar:.1f}" '
                           f'height="{y(acc) - y(acc + d):.1f}" fill="{PHASE_COLOUR[name]}"'
                           f"{faded}><title>{_esc(p.run_id)} {name}: {fmt_seconds(d)}</title>"
                           "</rect>")
                acc += d
        if p.ttr_s is None:
            if labelled:
                out.append(f'<text x="{inside(cx(i), 6):.1f}" y="{y(acc) - 6:.1f}" '
                           'class="bad" text-anchor="middle">no TTR</text>')
            continue
        out.append(f'<circle cx="{cx(i):.1f}" cy="{y(p.ttr_s):.1f}" r="3.5" class="dot">'
                   f"<title>{_esc(p.run_id)}: {fmt_seconds(p.ttr_s)}</title></circle>")
        if labelled:
            text_x = inside(cx(i), len(fmt_seconds(p.ttr_s)))
            out.append(f'<text x="{text_x:.1f}" y="{y(p.ttr_s) - 8:.1f}" '
                       f'class="{"bad" if c.regression else "val"}" text-anchor="middle">'
                       f"{fmt_seconds(p.ttr_s)}</text>")
        if c.regression:
            top_y = min(y(p.ttr_s), y(acc)) - 22
            out.append(f'<rect x="{x0 - 3:.1f}" y="{top_y:.1f}" width="{bar + 6:.1f}" '
                       f'height="{base_y - top_y:.1f}" class="regr"><title>{_esc(c.reason)}'
                       "</title></rect>")
    # The TTR line, broken where a run did not converge.
    run: list[str] = []
    for i, maybe in enumerate([*points, None]):
        if maybe is not None and maybe.ttr_s is not None:
            run.append(f"{cx(i):.1f},{y(maybe.ttr_s):.1f}")
            continue
        if len(run) > 1:
            out.append(f'<polyline points="{" ".join(run)}" class="ttrline"/>')
        run = []
    if latest is not None and latest.median_s is not None and latest.limit_s is not None:
        first = next((i for i, p in enumerate(points) if p in latest.baseline), 0)
        xa, xb = cx(first) - slot / 2, width - right
        # Two-line labels beside the lines; when the lines are close, the limit's label goes
        # above its line and the median's below, so the four lines never overlap.
        close = y(latest.median_s) - y(latest.limit_s) < 30
        for value, cls, text, above in ((latest.median_s, "median", "median", False),
                                        (latest.limit_s, "limit", "regression above", True)):
            yv = y(value)
            first_y, second_y = (yv - 2, yv + 11) if not close else (
                (yv - 15, yv - 3) if above else (yv + 11, yv + 23))
            out.append(f'<line x1="{xa:.1f}" x2="{xb:.1f}" y1="{yv:.1f}" '
                       f'y2="{yv:.1f}" class="{cls}"/><text x="{xb + 6:.1f}" '
                       f'y="{first_y:.1f}" class="{cls}l">{text}</text><text '
                       f'x="{xb + 6:.1f}" y="{second_y:.1f}" class="{cls}l">'
                       f"{fmt_seconds(value)}</text>")
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{base_y}" y2="{base_y}" '
               f'class="axis"/>')
    # Manual steps in the recovery, run by run.
    s_top = base_y + gap
    s_base = s_top + steps_h
    most = max((p.manual_steps for p in points), default=0)
    s_extent = max(most, 1) * 1.25
    s_step = 1.0 if most <= 5 else nice_number_step(s_extent, 3)
    out.append(f'<text x="{left}" y="{s_top - 12}" class="h">manual steps in the recovery'
               "</text>")
    for k in range(int(s_extent // s_step) + 1):
        yv = s_base - steps_h * k * s_step / s_extent
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{yv:.1f}" y2="{yv:.1f}" '
                   f'class="grid"/><text x="{left - 6}" y="{yv + 4:.1f}" class="tick" '
                   f'text-anchor="end">{k * s_step:g}</text>')
    pts = [(cx(i), s_base - steps_h * p.manual_steps / s_extent) for i, p in enumerate(points)]
    if len(pts) > 1:
        out.append('<polyline points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
                   + '" class="stepline"/>')
    for (a, b), p in zip(pts, points, strict=True):
        out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.5" class="stepdot"><title>'
                   f"{_esc(p.run_id)}: {p.manual_steps}</title></circle>")
        if slot >= 3 * CHAR_W:
            out.append(f'<text x="{a:.1f}" y="{b - 7:.1f}" class="val" text-anchor="middle">'
                       f"{p.manual_steps}</text>")
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{s_base}" y2="{s_base}" '
               f'class="axis"/>')
    # When each run started, under both panels; thinned so the labels never overlap.
    every = max(1, math.ceil(64 / slot))
    for i, p in enumerate(points):
        if (len(points) - 1 - i) % every == 0:
            stamp = p.started_at.astimezone(dt.UTC).strftime("%m-%d %H:%M")
            out.append(f'<text transform="translate({cx(i):.1f},{s_base + 14}) rotate(-30)" '
                       f'class="tick" text-anchor="end">{stamp}</text>')
    return "".join(out), height


def _esc(text: str) -> str:
    return html.escape(redact(text), quote=True)


_SVG_CSS = (
    "text{font-family:system-ui,'Liberation Sans',sans-serif;font-size:12px;fill:#1f2328}"
    ".t{font-size:15px;font-weight:600}.h{font-size:13px;font-weight:600}"
    ".tick{font-size:11px;fill:#59636e}.val{font-size:11px;fill:#59636e}"
    ".bad{font-size:11px;fill:#cf222e;font-weight:700}"
    ".grid{stroke:#eaeef2}.axis{stroke:#8c959f}"
    ".val,.bad{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}"
    ".dot{fill:#1f2328}.ttrline{fill:none;stroke:#1f2328;stroke-width:1.5}"
    ".median{stroke:#57606a;stroke-dasharray:2 3;stroke-width:1.5}"
    ".limit{stroke:#cf222e;stroke-dasharray:6 3;stroke-width:1.5}"
    ".medianl{font-size:11px;fill:#57606a}.limitl{font-size:11px;fill:#cf222e}"
    ".regr{fill:none;stroke:#cf222e;stroke-width:2}"
    ".stepline{fill:none;stroke:#bf8700;stroke-width:1.5}.stepdot{fill:#bf8700}"
)


def run_trend(history_dir: Path, out_dir: Path | None = None, *,
              threshold_pct: float = THRESHOLD_PCT, floor_s: float = FLOOR_S,
              window: int = WINDOW, print_out: Callable[[str], None] = print,
              warn: Callable[[str], None] = print) -> int:
    """Read the history, write `trend.svg` and `trend.md`, print the tables; 1 when the latest
    run of any group is a regression, 2 when there is nothing to read, else 0."""
    if not history_dir.is_dir():
        warn(f"drdrill: no history folder {history_dir} (pass --history DIR)")
        return 2
    history = load_history(history_dir, warn=lambda line: warn(f"drdrill: warning: {line}"))
    if not history.points:
        warn(f"drdrill: no readable */report.json under {history_dir}")
        return 2
    groups = trend_groups(history, threshold_pct=threshold_pct, floor_s=floor_s, window=window)
    out = out_dir or history_dir
    text = render_markdown(history, groups, rule_text(threshold_pct, floor_s, window))
    write_report_file(out / MARKDOWN_NAME, text)
    svg = write_report_file(out / SVG_NAME, render_svg(groups))
    print_out(text.rstrip("\n"))
    print_out(f"\nwrote {out / MARKDOWN_NAME} and {svg}")
    return 1 if any(g.regression for g in groups) else 0


__all__ = ["Check", "GroupTrend", "History", "RunPoint", "check", "load_history",
           "parse_report", "render_markdown", "render_svg", "repo_key", "rule_text", "run_trend",
           "trend_groups"]
