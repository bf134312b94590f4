"""The fleet page: many drills of many repos, clusters and providers (CI matrix cells, nightly
history) merged into one view, worst first: `drdrill report merge DIR...`.

One row per scenario x provider x repo x cluster: the latest run's verdict, time-to-ready
against its RTO, manual steps, a trend line of time-to-ready over the previous runs, and the
regression rule of `harness.report.trend` applied to the latest run. Written as fleet.html
(self-contained), fleet.md (for a job summary) and fleet.json (for other tools).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.html import PAGE_CSS, VERDICT_COLOUR, esc
from harness.report.markdown import cell, fmt_seconds
from harness.report.redact import redact, redact_data, write_report_file
from harness.report.trend import (
    FLOOR_S,
    THRESHOLD_PCT,
    WINDOW,
    GroupTrend,
    History,
    RunPoint,
    load_history,
    rule_text,
    trend_groups,
)

FLEET_SCHEMA_VERSION = 1
HTML_NAME = "fleet.html"
MARKDOWN_NAME = "fleet.md"
JSON_NAME = "fleet.json"
SPARK_RUNS = 20
"""The trend line shows this many most recent runs."""

_RANK = {"failed": 0, "broken": 1}


@dataclass(frozen=True)
class Row:
    """One scenario x provider x repo x cluster of the fleet."""

    group: GroupTrend
    link: str | None
    """The latest run's index.html, relative to the fleet page (None when it is not there)."""

    @property
    def latest(self) -> RunPoint:
        return self.group.points[-1]

    @property
    def rto_margin_s(self) -> float | None:
        p = self.latest
        return None if p.rto_s is None or p.ttr_s is None else p.rto_s - p.ttr_s

    @property
    def status(self) -> str:
        """failed | broken | regression | over-rto | passed: what puts the row where it is."""
        if self.latest.verdict in _RANK:
            return self.latest.verdict
        if self.group.regression:
            return "regression"
        margin = self.rto_margin_s
        return "over-rto" if margin is not None and margin < 0 else "passed"

    def sort_key(self) -> tuple[int, bool, bool, float, str]:
        order = {"failed": 0, "broken": 1, "regression": 2, "over-rto": 3, "passed": 4}
        p = self.latest
        # Among equals: never converged, then a regression, then the least RTO headroom (as a
        # share of the RTO) first.
        share = (self.rto_margin_s / p.rto_s if self.rto_margin_s is not None and p.rto_s
                 else float("inf"))
        return (order[self.status], p.ttr_s is not None, not self.group.regression, share,
                self.group.title)


@dataclass(frozen=True)
class Fleet:
    rows: tuple[Row, ...]
    history: History
    sources: tuple[Path, ...]
    rule: str

    @property
    def regressions(self) -> int:
        return sum(r.group.regression for r in self.rows)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out


# -- reading --------------------------------------------------------------------------------

def load_fleet(dirs: Sequence[Path], out_dir: Path, *, threshold_pct: float = THRESHOLD_PCT,
               floor_s: float = FLOOR_S, window: int = WINDOW,
               warn: Callable[[str], None] = lambda _: None) -> Fleet:
    """Every report.json under `dirs` (a run seen in two folders counts once), grouped, checked
    and sorted worst first."""
    merged = History()
    seen: set[str] = set()
    for folder in dirs:
        part = load_history(folder, warn=warn)
        merged.skipped += part.skipped
        for point in part.points:
            if point.run_id not in seen:
                seen.add(point.run_id)
                merged.points.append(point)
    merged.points.sort(key=lambda p: (p.started_at, p.run_id))
    groups = trend_groups(merged, threshold_pct=threshold_pct, floor_s=floor_s, window=window)
    rows = sorted((Row(g, _link(g.points[-1], out_dir)) for g in groups),
                  key=Row.sort_key)
    return Fleet(tuple(rows), merged, tuple(dirs), rule_text(threshold_pct, floor_s, window))


def _link(point: RunPoint, out_dir: Path) -> str | None:
    page = point.path.parent / "index.html"
    if not page.is_file():
        return None
    return Path(os.path.relpath(page.resolve(), out_dir.resolve())).as_posix()


# -- JSON -----------------------------------------------------------------------------------

def fleet_data(fleet: Fleet) -> dict[str, Any]:
    """fleet.json: the rows worst first, each with its latest run and its trend."""
    rows = []
    for r in fleet.rows:
        scenario, provider, repo, cluster = r.group.key
        p = r.latest
        rows.append({
            "scenario": scenario, "provider": provider, "repo": repo, "cluster": cluster,
            "status": r.status, "runs": len(r.group.points),
            "latest": {"run_id": p.run_id, "started_at": p.started_at.isoformat(),
                       "verdict": p.verdict, "time_to_ready_s": p.ttr_s, "rto_target_s": p.rto_s,
                       "rto_margin_s": r.rto_margin_s, "manual_steps": p.manual_steps,
                       "error": p.error or None, "report": r.link},
            "regression": r.group.regression, "regression_rule": r.group.latest.reason,
            "median_s": r.group.latest.median_s,
            "trend": [{"run_id": q.run_id, "started_at": q.started_at.isoformat(),
                       "verdict": q.verdict, "time_to_ready_s": q.ttr_s,
                       "manual_steps": q.manual_steps} for q in r.group.points],
        })
    data: dict[str, Any] = redact_data({
        "schema_version": FLEET_SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "runs": len(fleet.history.points), "regressions": fleet.regressions,
        "status_counts": fleet.counts(), "rule": fleet.rule,
        "skipped": [{"path": str(path), "why": why} for path, why in fleet.history.skipped],
        "rows": rows,
    })
    return data


# -- Markdown -------------------------------------------------------------------------------

_BLOCKS = "▁▂▃▄▅▆▇█"
_STATUS_MD = {"failed": "❌ failed", "broken": "⚠️ broken", "regression": "📈 regression",
              "over-rto": "⏱ over RTO", "passed": "✅ passed"}


def spark_text(values: Sequence[float | None]) -> str:
    """A one-line trend of block characters; `·` where a run has no time-to-ready."""
    nums = [v for v in values if v is not None]
    if not nums:
        return "·" * len(values)
    low, high = min(nums), max(nums)
    span = (high - low) or 1.0
    return "".join("·" if v is None else _BLOCKS[round((v - low) / span * (len(_BLOCKS) - 1))]
                   for v in values)


def render_fleet_markdown(fleet: Fleet) -> str:
    """fleet.md: one line of totals and one table row per group, worst first."""
    counts = fleet.counts()
    head = ", ".join(f"{n} {k}" for k, n in counts.items())
    lines = ["## drdrill fleet", "",
             f"{len(fleet.rows)} drill(s) of {len(fleet.history.points)} run(s): {head}."
             + (f" **{fleet.regressions} regression(s).**" if fleet.regressions else ""), "",
             "| Status | Repo | Cluster | Provider | Scenario | TTR vs RTO | Manual steps | "
             "Trend | Latest run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in fleet.rows:
        scenario, provider, repo, cluster = r.group.key
        p = r.latest
        trend = spark_text([q.ttr_s for q in r.group.points[-SPARK_RUNS:]])
        if r.group.regression:
            trend += f" {_delta(r)}"
        lines.append("| " + " | ".join(cell(c) for c in (
            _STATUS_MD[r.status], f"`{repo}`", f"`{cluster}`" if cluster else "",
            provider, scenario, _ttr_vs_rto(p, r.rto_margin_s), str(p.manual_steps), trend,
            f"`{p.run_id}`")) + " |")
    problems = [r for r in fleet.rows if r.status != "passed"]
    if problems:
        lines += ["", "### What needs a look", ""]
        for r in problems:
            why = r.group.latest.reason if r.status == "regression" else (
                r.latest.error or _ttr_vs_rto(r.latest, r.rto_margin_s))
            lines.append(f"- **{r.group.title}**: {why}")
    lines += ["", fleet.rule]
    if fleet.history.skipped:
        lines.append(f"{len(fleet.history.skipped)} unreadable report(s) skipped.")
    return redact("\n".join(lines) + "\n")


def _ttr_vs_rto(p: RunPoint, margin: float | None) -> str:
    ttr = fmt_seconds(p.ttr_s) if p.ttr_s is not None else "not reached"
    if p.rto_s is None:
        return f"{ttr} (no RTO)"
    if margin is None:
        return f"{ttr} / RTO {fmt_seconds(p.rto_s)}"
    return (f"{ttr} / RTO {fmt_seconds(p.rto_s)} "
            + (f"({fmt_seconds(margin)} to spare)" if margin >= 0
               else f"(over by {fmt_seconds(-margin)})"))


def _delta(r: Row) -> str:
    c = r.group.latest
    if c.median_s is None or c.delta_s is None or not c.median_s:
        return ""
    return f"{c.delta_s / c.median_s:+.0%} vs median"


# -- HTML -----------------------------------------------------------------------------------

_STATUS_COLOUR = {"failed": VERDICT_COLOUR["failed"], "broken": VERDICT_COLOUR["broken"],
                  "regression": "#8250df", "over-rto": "#bf8700",
                  "passed": VERDICT_COLOUR["passed"]}


def spark_svg(row: Row, width: float = 180.0, height: float = 40.0) -> str:
    """Time-to-ready of the recent runs as a line; the RTO dashed, failed runs as red marks,
    the latest run's dot red when it is a regression."""
    points = list(row.group.points)[-SPARK_RUNS:]
    values = [p.ttr_s for p in points]
    rto = row.latest.rto_s
    top = max([*(v for v in values if v is not None), *([rto] if rto else []), 1.0]) * 1.1
    pad = 4.0
    step = (width - 2 * pad) / max(len(points) - 1, 1)

    def x(i: int) -> float:
        return pad + step * i if len(points) > 1 else width / 2

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * v / top

    out = []
    if rto:
        out.append(f'<line x1="0" x2="{width:.0f}" y1="{y(rto):.1f}" y2="{y(rto):.1f}" '
                   'stroke="#cf222e" stroke-dasharray="4 3" stroke-width="1"/>')
    run: list[str] = []
    for i, v in enumerate([*values, None]):
        if v is not None:
            run.append(f"{x(i):.1f},{y(v):.1f}")
            continue
        if len(run) > 1:
            out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="#1f2328" '
                       'stroke-width="1.5"/>')
        run = []
    for i, p in enumerate(points):
        last = i == len(points) - 1
        label = f"{p.run_id}: {fmt_seconds(p.ttr_s) if p.ttr_s is not None else p.verdict}"
        if p.ttr_s is None:
            out.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{height - pad:.1f}" '
                       f'y2="{height - pad - 8:.1f}" stroke="#cf222e" stroke-width="2">'
                       f"<title>{esc(label)}</title></line>")
            continue
        colour = "#cf222e" if last and row.group.regression else "#1f2328"
        out.append(f'<circle cx="{x(i):.1f}" cy="{y(p.ttr_s):.1f}" r="{3 if last else 2}" '
                   f'fill="{colour}"><title>{esc(label)}</title></circle>')
    return (f'<svg class="spark" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
            f'height="{height:.0f}" role="img"><title>time-to-ready of the last {len(points)} '
            f'run(s)</title>{"".join(out)}</svg>')


def _ttr_cell(p: RunPoint, margin: float | None) -> str:
    ttr = fmt_seconds(p.ttr_s) if p.ttr_s is not None else "not reached"
    if p.rto_s is None:
        rto = "no RTO"
    elif margin is None:
        rto = f"RTO {fmt_seconds(p.rto_s)}"
    else:
        rto = f"RTO {fmt_seconds(p.rto_s)}, " + (f"{fmt_seconds(margin)} to spare" if margin >= 0
                                                 else f"over by {fmt_seconds(-margin)}")
    return f'<b>{esc(ttr)}</b><div class="sub">{esc(rto)}</div>'


def render_fleet_html(fleet: Fleet) -> str:
    """fleet.html: totals as tiles, then one row per group, worst first."""
    counts = fleet.counts()
    tiles = "".join(
        f'<div class="tile"><div class="k">{esc(k)}</div><div class="v" style="color:'
        f'{_STATUS_COLOUR[k]}">{n}</div></div>' for k, n in counts.items())
    if fleet.regressions:
        tiles += (f'<div class="tile"><div class="k">regressions</div><div class="v" '
                  f'style="color:{_STATUS_COLOUR["regression"]}">{fleet.regressions}</div></div>')
    tiles += (f'<div class="tile"><div class="k">runs read</div><div class="v">'
              f"{len(fleet.history.points)}</div></div>")
    rows = []
    for r in fleet.rows:
        scenario, provider, repo, cluster = r.group.key
        p = r.latest
        colour = _STATUS_COLOUR[r.status]
        margin = r.rto_margin_s
        ttr_cls = "bad" if (margin is not None and margin < 0) or p.ttr_s is None else ""
        run = (f'<a href="{esc(r.link)}">{esc(p.run_id)}</a>' if r.link
               else f"<code>{esc(p.run_id)}</code>")
        why = (r.group.latest.reason if r.group.regression else p.error)
        rows.append(
            f'<tr><td><span class="status" style="background:{colour}">{esc(r.status)}</span>'
            f"</td><td><code>{esc(repo)}</code></td><td><code>{esc(cluster)}</code></td>"
            f"<td>{esc(provider)}</td><td>{esc(scenario)}</td>"
            f'<td class="{ttr_cls}">{_ttr_cell(p, margin)}</td>'
            f"<td>{p.manual_steps}</td><td>{spark_svg(r)}<div class=\"sub\">"
            f"{len(r.group.points)} run(s) {esc(_delta(r))}</div></td>"
            f"<td>{run}<div class=\"sub\">{esc(p.started_at.strftime('%Y-%m-%d %H:%M'))} UTC"
            f"</div></td></tr>"
            + (f'<tr class="why"><td></td><td colspan="8">{esc(why)}</td></tr>' if why else ""))
    sources = ", ".join(f"<code>{esc(s)}</code>" for s in fleet.sources)
    skipped = (f"<p>{len(fleet.history.skipped)} unreadable report(s) skipped.</p>"
               if fleet.history.skipped else "")
    headline = (f"{fleet.regressions} regression(s)" if fleet.regressions
                else "no regression")
    doc = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>drdrill fleet: {esc(headline)}</title>\n<style>{PAGE_CSS}{_FLEET_CSS}</style>\n"
        "</head>\n<body>\n<main>\n"
        f"<h1>drdrill fleet</h1>\n<p>{len(fleet.rows)} drill(s) (scenario &times; provider &times; "
        f"repo &times; cluster), worst first; {esc(headline)}.</p>\n"
        f'<div class="tiles">{tiles}</div>\n'
        '<table class="fleet">\n<thead><tr><th>Status</th><th>Repo</th><th>Cluster</th>'
        "<th>Provider</th><th>Scenario</th><th>TTR vs RTO</th><th>Manual steps</th>"
        "<th>Time-to-ready, recent runs</th><th>Latest run</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows) + "\n</tbody>\n</table>\n"
        f"<p class=\"sub\">{esc(fleet.rule)} The dashed red line is the RTO.</p>{skipped}\n"
        f"<footer>drdrill fleet page schema {FLEET_SCHEMA_VERSION} · read from {sources}"
        "</footer>\n</main>\n</body>\n</html>\n")
    return redact(doc)


_FLEET_CSS = """
main{max-width:1400px}h1{margin:18px 0 4px}
table.fleet td{vertical-align:middle}table.fleet td:nth-child(6){white-space:nowrap}
table.fleet code{white-space:nowrap;overflow-wrap:normal}
.status{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;
font-weight:600;white-space:nowrap}
tr.why td{border-top:none;color:#59636e;font-family:ui-monospace,monospace;font-size:12px;
padding-top:0}
.sub{color:#59636e;font-size:12px}svg.spark{display:block}
td.bad b{color:#cf222e}
"""


# -- the command ----------------------------------------------------------------------------

def run_merge(dirs: Sequence[Path], out_dir: Path, *, threshold_pct: float = THRESHOLD_PCT,
              floor_s: float = FLOOR_S, window: int = WINDOW,
              print_out: Callable[[str], None] = print,
              warn: Callable[[str], None] = print) -> int:
    """Write fleet.html, fleet.md and fleet.json into `out_dir`; 1 on any regression, 2 when
    there is nothing to read, else 0."""
    missing = [d for d in dirs if not d.is_dir()]
    for d in missing:
        warn(f"drdrill: no folder {d}")
    fleet = load_fleet([d for d in dirs if d.is_dir()], out_dir, threshold_pct=threshold_pct,
                       floor_s=floor_s, window=window,
                       warn=lambda line: warn(f"drdrill: warning: {line}"))
    if not fleet.rows:
        warn(f"drdrill: no readable */report.json under {', '.join(map(str, dirs))}")
        return 2
    md = render_fleet_markdown(fleet)
    write_report_file(out_dir / MARKDOWN_NAME, md)
    write_report_file(out_dir / HTML_NAME, render_fleet_html(fleet))
    write_report_file(out_dir / JSON_NAME,
                      json.dumps(fleet_data(fleet), indent=2, ensure_ascii=False) + "\n",
                      scrub=False)
    print_out(md.rstrip("\n"))
    print_out(f"\nwrote {out_dir / HTML_NAME}, {out_dir / MARKDOWN_NAME} and "
              f"{out_dir / JSON_NAME}")
    return 1 if fleet.regressions else 0


__all__ = ["Fleet", "Row", "fleet_data", "load_fleet", "render_fleet_html",
           "render_fleet_markdown", "run_merge", "spark_svg", "spark_text"]
