"""The standalone HTML recovery report (`index.html`): one self-contained file with inline CSS
and inline SVG charts, no scripts and nothing fetched, so it opens from a CI artifact offline.

Every text that comes from the drill is redacted first and then escaped (in that order: the
redaction patterns stop at `&`, so escaping first would hide a secret from them).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.report.markdown import flatten, flux_setting_rows, fmt_seconds, round_label
from harness.report.model import CriticalHop, DrillReport, ObjectRecord, PhaseRecord
from harness.report.redact import redact, strip_control, write_report_file

HTML_NAME = "index.html"

VERDICT_COLOUR = {"passed": "#1a7f37", "failed": "#cf222e", "broken": "#b35900"}
OUTCOME_COLOUR = {"passed": "#1a7f37", "failed": "#cf222e", "broken": "#b35900",
                  "skipped": "#6e7781"}
PHASE_COLOUR = {"preflight": "#8c959f", "provision": "#0969da", "bootstrap": "#8250df",
                "converge": "#1b7c83", "verify": "#2da44e", "disaster": "#a40e26",
                "report": "#8c959f", "teardown": "#8c959f"}
CRITICAL = "#d1242f"
OBJECT_BAR = "#7a9cc6"

# Geometry of the Gantt charts, in SVG user units (the SVG scales to the page width).
_W = 1100
_LABEL_W = 300
_RIGHT = 80
_ROW = 20
_BAR = 12
_AXIS_H = 26
_LABEL_CHARS = 44


def esc(text: object) -> str:
    """Redact, drop control characters, then HTML-escape (quotes too: safe in attributes)."""
    return html.escape(redact(strip_control(str(text))), quote=True)


def render_html(report: DrillReport) -> str:
    """The whole report as one HTML document, secrets redacted."""
    sections = [
        _banner(report),
        _ttr_vs_rto(report),
        _summary(report),
        _figures(report),
        _error(report.error),
        _timeline(report),
        _objects(report),
        _where_the_time_went(report),
        _manual_steps(report),
        _egress(report),
        _settings(report.settings),
        _notes(report),
        _diagnostics(report.diagnostics),
    ]
    title = f"drdrill {report.scenario} on {report.provider}: {report.verdict.upper()}"
    body = "\n".join(s for s in sections if s)
    doc = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
           f"<title>{esc(title)}</title>\n<style>{PAGE_CSS}</style>\n</head>\n<body>\n<main>\n"
           f"{body}\n<footer>drdrill report schema {report.schema_version} · run "
           f"<code>{esc(report.run_id)}</code> · generated from <code>report.json</code>"
           f"</footer>\n</main>\n</body>\n</html>\n")
    return redact(doc)


def write_html(report: DrillReport, out_dir: Path) -> Path:
    """Write `out_dir/index.html`; ReportError names the file and the fix."""
    return write_report_file(out_dir / HTML_NAME, render_html(report))


# -- small helpers --------------------------------------------------------------------------

def short_seconds(seconds: float) -> str:
    """Axis tick text: `0`, `0.5s`, `45s`, `2m`, `2m30s`, `1h05m`."""
    if seconds != int(seconds) and seconds < 60:  # the half-second ticks of short charts
        return f"{seconds:g}s"
    s = round(seconds)
    if s == 0:
        return "0"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" + (f"{s % 60:02d}s" if s % 60 else "")
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def nice_step(extent: float, ticks: int = 8) -> float:
    """A round tick step (1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10 ... min) giving about `ticks`."""
    raw = max(extent, 1e-9) / ticks
    for step in (0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if step >= raw:
            return float(step)
    return float(3600 * math.ceil(raw / 3600))


def nice_number_step(extent: float, ticks: int = 5) -> float:
    """1, 2, 5 x 10^n steps for plain numbers (counts)."""
    raw = max(extent, 1e-9) / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))


def truncate(text: str, limit: int = _LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_duration(text: object) -> float | None:
    """Seconds in a Go duration (`2s`, `1m30s`, `500ms`); None when it is not one."""
    if isinstance(text, (int, float)):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text).strip():
        return None
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    return sum(float(n) * unit[u] for n, u in parts)


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{esc(title)}</h2>\n{body}\n</section>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """Cells are HTML already (callers escape)."""
    head = ("<thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead>\n"
            if any(header) else "")
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}>\n{head}<tbody>\n{body}\n</tbody>\n</table>"


def _badge(outcome: str) -> str:
    return f'<span class="badge {esc(outcome)}">{esc(outcome)}</span>'


def _code(text: object) -> str:
    return f"<code>{esc(text)}</code>"


def _ref(ref: str) -> str:
    """An object reference as code that may wrap after its slashes."""
    return "<code>" + "/<wbr>".join(esc(part) for part in ref.split("/")) + "</code>"


def _object_label(ref: str) -> str:
    kind, _, rest = ref.partition("/")
    return f"{kind} {rest}"


def _phase_label(p: PhaseRecord) -> str:
    return p.name if p.round == 0 else f"round {p.round} · {p.name}"


# -- banner and headline numbers ------------------------------------------------------------

def _banner(r: DrillReport) -> str:
    colour = VERDICT_COLOUR.get(r.verdict, "#6e7781")
    if r.time_to_ready_s is None:
        ttr = "did not converge"
    else:
        ttr = f"recovered in {fmt_seconds(r.time_to_ready_s)}"
    margin = r.rto_margin_s
    if margin is not None:
        ttr += (f", {fmt_seconds(margin)} inside the RTO" if margin >= 0
                else f", {fmt_seconds(-margin)} over the RTO")
    why = ""
    if r.verdict != "passed" and r.error:
        lines = [line.strip() for line in r.error.strip().splitlines() if line.strip()]
        # "X failed:" alone says little; the line after it names what.
        shown = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
        why = f'<p class="why">{esc(truncate(shown, 200))}</p>'
    # The cards count the round the drill reached: a drill that stopped in round 1 shows round
    # 1's objects and steps, not the empty recovery round that never ran.
    rnd = shown_round(r)
    steps = tuple(m for m in r.manual_steps if m.round == rnd)
    share = (f" · {sum(m.duration_s for m in steps) / r.time_to_ready_s:.0%} of TTR"
             if steps and r.time_to_ready_s and rnd == r.recovery_round else "")
    objs = r.objects_in_round(rnd)
    of_round = "" if rnd == r.recovery_round else f" (round {rnd})"
    fig = r.recovery_figure
    tiles = [
        *(((fig.label[:1].upper() + fig.label[1:],
            fmt_seconds(fig.value_s) if fig.value_s is not None else "not reached"),)
          if fig is not None else ()),
        ("Time-to-ready", fmt_seconds(r.time_to_ready_s) if r.time_to_ready_s is not None
         else "not reached"),
        ("RTO target", fmt_seconds(r.rto_target_s) if r.rto_target_s is not None else "none"),
        ("Margin", "n/a" if margin is None else
         (f"+{fmt_seconds(margin)}" if margin >= 0 else fmt_seconds(margin))),
        (f"Manual steps{of_round}", f"{len(steps)}{share}"),
        (f"Automated by drdrill{of_round}", str(sum(a.round == rnd
                                                    for a in r.automated_steps))),
        (f"Flux objects ready{of_round}", f"{sum(o.ready for o in objs)} / {len(objs)}"),
    ]
    recovery = (f"round {r.recovery_round} is the recovery" if rnd == r.recovery_round else
                f"stopped in round {rnd}; round {r.recovery_round} (the recovery) never ran")
    tile_html = "".join(f'<div class="tile"><div class="k">{esc(k)}</div>'
                        f'<div class="v{" bad" if v.startswith("-") else ""}">{esc(v)}</div>'
                        "</div>" for k, v in tiles)
    return (f'<header class="banner" style="background:{colour}">\n'
            f'<div class="verdict" id="verdict">{esc(r.verdict.upper())}</div>\n'
            f"<div><h1>{esc(r.scenario)} on {esc(r.provider)}</h1>\n"
            f'<p class="sub">{esc(ttr)} · {esc(recovery)}</p>{why}'
            f"</div>\n</header>\n<div class=\"tiles\">{tile_html}</div>")


def shown_round(r: DrillReport) -> int:
    """The recovery round, or the last round the drill reached when it stopped before it."""
    reached = max((p.round for p in r.phases if p.round), default=r.recovery_round)
    return min(reached, r.recovery_round)


def _ttr_vs_rto(r: DrillReport) -> str:
    """Horizontal bars: recovery TTR (and the first build's) against the RTO line."""
    first = r.settings.get("first_build_ttr_s")
    bars: list[tuple[str, float | None, bool]] = [
        (f"round {r.recovery_round} (recovery)", r.time_to_ready_s, True)]
    if isinstance(first, (int, float)) and r.recovery_round != 1:
        bars.append(("round 1 (first build)", float(first), False))
    values = [v for _, v, _ in bars if v is not None]
    if r.rto_target_s is not None:
        values.append(r.rto_target_s)
    if not values:
        return _section("rto", "Time-to-ready vs RTO", "<p>No time-to-ready was measured.</p>")
    extent = max(values) * 1.08
    x0, plot = 180.0, _W - 180.0 - _RIGHT
    height = _AXIS_H + 30 * len(bars) + 8

    def x(v: float) -> float:
        return x0 + plot * v / extent

    parts = [_axis(x0, plot, extent, height - _AXIS_H + 4, 8)]
    for i, (label, value, recovery) in enumerate(bars):
        y = 8 + 30 * i
        parts.append(f'<text x="{x0 - 8}" y="{y + 13}" class="lbl" text-anchor="end">'
                     f"{esc(label)}</text>")
        if value is None:
            parts.append(f'<text x="{x0 + 4}" y="{y + 13}" class="bad">not converged</text>')
            continue
        over = r.rto_target_s is not None and value > r.rto_target_s
        fill = (CRITICAL if over else "#2da44e") if recovery else "#afb8c1"
        parts.append(f'<rect x="{x0}" y="{y}" width="{x(value) - x0:.1f}" height="18" '
                     f'fill="{fill}" rx="2"><title>{esc(label)}: {esc(fmt_seconds(value))}'
                     f"</title></rect>")
        parts.append(f'<text x="{x(value) + 6:.1f}" y="{y + 13}" class="val">'
                     f"{esc(fmt_seconds(value))}</text>")
    if r.rto_target_s is not None:
        xr = x(r.rto_target_s)
        parts.append(f'<line x1="{xr:.1f}" x2="{xr:.1f}" y1="2" y2="{height - _AXIS_H + 4}" '
                     f'class="rto"/><text x="{xr + 4:.1f}" y="{height - _AXIS_H - 2}" '
                     f'class="rtol">RTO {esc(fmt_seconds(r.rto_target_s))}</text>')
    svg = _svg(height, "".join(parts), "Time-to-ready against the RTO target")
    margin = r.rto_margin_s
    if r.rto_target_s is None:
        words = "No RTO target was set (<code>--rto</code>)."
    elif margin is None:
        words = (f"The recovery did not converge; the RTO was "
                 f"{esc(fmt_seconds(r.rto_target_s))}.")
    elif margin >= 0:
        words = (f'<span class="good">{esc(fmt_seconds(margin))} to spare</span> against the RTO '
                 f"of {esc(fmt_seconds(r.rto_target_s))}.")
    else:
        words = (f'<span class="bad">Over the RTO by {esc(fmt_seconds(-margin))}</span> '
                 f"(RTO {esc(fmt_seconds(r.rto_target_s))}).")
    return _section("rto", "Time-to-ready vs RTO",
                    f"<p>Time-to-ready runs from the recovery's first action (provision) until "
                    f"every Flux object is ready at the revision. {words}</p>\n{svg}")


def _summary(r: DrillReport) -> str:
    rows = [
        ("Scenario", esc(r.scenario)), ("Provider", esc(r.provider)),
        ("Cluster", _code(r.cluster) if r.cluster else "n/a"), ("Repository", _code(r.repo)),
        ("Revision", _code(r.revision) if r.revision else "n/a"), ("Run", _code(r.run_id)),
        ("Started", esc(r.started_at)),
    ]
    return _section("summary", "Run", _table(("", ""), rows, "kv"))


def _figures(r: DrillReport) -> str:
    if not r.recovery_figures:
        return ""
    rows = []
    for f in r.recovery_figures:
        met = "" if f.met is None else _badge("passed" if f.met else "failed")
        limit = f" limit {esc(fmt_seconds(f.limit_s))}" if f.limit_s is not None else ""
        rows.append((f"<b>{esc(f.label)}</b>", esc(fmt_seconds(f.value_s)) if f.value_s
                     is not None else "<b>not reached</b>", met + limit, esc(f.description)))
        rows += [(f"&nbsp;&nbsp;{esc(i.ref)}", esc(fmt_seconds(i.value_s)) if i.value_s
                  is not None else "", "", esc(i.note)) for i in f.items]
    return _section("figures", "Recovery figures",
                    _table(("Figure", "Value", "Expectation", "What"), rows))


def _error(error: str | None) -> str:
    if not error:
        return ""
    return _section("error", "Error", f'<pre class="error">{esc(error.rstrip())}</pre>')


# -- SVG building blocks --------------------------------------------------------------------

def _svg(height: float, inner: str, title: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {_W} {height:.0f}" width="{_W}" '
            f'height="{height:.0f}" role="img">'
            f"<title>{esc(title)}</title>{_SVG_DEFS}{inner}</svg>")


def _axis(x0: float, plot: float, extent: float, y: float, top: float) -> str:
    """Grid lines from `top` down to the axis at `y`, tick labels under it."""
    step = nice_step(extent)
    parts = [f'<line x1="{x0}" x2="{x0 + plot}" y1="{y}" y2="{y}" class="axis"/>']
    n = int(extent // step)
    for i in range(n + 1):
        v = i * step
        xv = x0 + plot * v / extent
        parts.append(f'<line x1="{xv:.1f}" x2="{xv:.1f}" y1="{top}" y2="{y}" class="grid"/>'
                     f'<text x="{xv:.1f}" y="{y + 15}" class="tick" text-anchor="middle">'
                     f"{short_seconds(v)}</text>")
    return "".join(parts)


# -- the phase timeline ---------------------------------------------------------------------

def _timeline(r: DrillReport) -> str:
    phases = r.phases
    if not phases:
        return _section("timeline", "Timeline", "<p>No phase ran.</p>")
    extent = max(p.offset_s + p.duration_s for p in phases) or 1.0
    extent *= 1.02
    x0, plot = float(_LABEL_W), float(_W - _LABEL_W - _RIGHT)
    top = 38
    height = top + _ROW * len(phases) + _AXIS_H + 6
    axis_y = top + _ROW * len(phases) + 4

    def x(v: float) -> float:
        return x0 + plot * v / extent

    parts = [_axis(x0, plot, extent, axis_y, top - 4)]
    prov = next((p for p in phases if p.round == r.recovery_round and p.name == "provision"),
                None)
    if prov is not None and r.time_to_ready_s is not None:
        xa, xb = x(prov.offset_s), x(prov.offset_s + r.time_to_ready_s)
        parts.append(f'<rect x="{xa:.1f}" y="{top - 34}" width="{xb - xa:.1f}" '
                     f'height="{axis_y - top + 34}" class="ttrband"/>'
                     f'<text x="{(xa + xb) / 2:.1f}" y="{top - 22}" class="bandl" '
                     f'text-anchor="middle">time-to-ready {esc(fmt_seconds(r.time_to_ready_s))}'
                     f"</text>")
    if prov is not None and r.rto_target_s is not None:
        xr = x(prov.offset_s + r.rto_target_s)
        if xr <= x0 + plot:
            parts.append(f'<line x1="{xr:.1f}" x2="{xr:.1f}" y1="{top - 4}" y2="{axis_y}" '
                         f'class="rto"/><text x="{xr + 3:.1f}" y="{top - 6}" class="rtol">'
                         f"RTO {esc(fmt_seconds(r.rto_target_s))}</text>")
    for i, p in enumerate(phases):
        y = top + _ROW * i
        label = _phase_label(p)
        xa, w = x(p.offset_s), max(plot * p.duration_s / extent, 1.5)
        colour = PHASE_COLOUR.get(p.name, "#8c959f")
        stroke = (f' stroke="{OUTCOME_COLOUR[p.outcome]}" stroke-width="2"'
                  if p.outcome != "passed" else "")
        tip = f"{label}: {p.outcome}, {fmt_seconds(p.duration_s)} from +{fmt_seconds(p.offset_s)}"
        if p.error:
            tip += f"\n{p.error}"
        parts.append(f'<text x="{x0 - 8}" y="{y + 14}" class="lbl" text-anchor="end">'
                     f"{esc(label)}</text>"
                     f'<rect x="{xa:.1f}" y="{y + 3}" width="{w:.1f}" height="{_BAR + 2}" '
                     f'fill="{colour}"{stroke} rx="2"><title>{esc(tip)}</title></rect>')
        note = fmt_seconds(p.duration_s) + ("" if p.outcome == "passed" else f" {p.outcome}")
        cls = "val" if p.outcome == "passed" else "val bad"
        parts.append(f'<text x="{xa + w + 5:.1f}" y="{y + 14}" class="{cls}">{esc(note)}</text>')
    svg = _svg(height, "".join(parts), "Phases of the drill on one time axis")
    rows = [(esc(round_label(p.round, r.recovery_round)), esc(p.name),
             esc(f"+{fmt_seconds(p.offset_s)}"), esc(fmt_seconds(p.duration_s)),
             _badge(p.outcome),
             f'<span class="err">{esc(p.error.strip())}</span>' if p.error else "")
            for p in phases]
    table = _table(("Round", "Phase", "Start", "Duration", "Outcome", "Error"), rows, "phases")
    return _section("timeline", "Timeline",
                    "<p>Both rounds on one time axis, seconds from the drill's start. The shaded "
                    "band is the recovery's time-to-ready.</p>\n" + svg + "\n" + table)


# -- the Flux objects of each round ---------------------------------------------------------

def _objects(r: DrillReport) -> str:
    rounds = sorted({o.round for o in r.objects}, key=lambda n: (n != r.recovery_round, n))
    if not rounds:
        return _section("objects", "Flux objects", "<p>No Flux object was seen.</p>")
    critical = {h.ref: h for h in r.critical_path}
    parts = ["<p>Each bar runs from when the object first existed in the cluster (Flux applied "
             "it) until the harness saw it ready at the revision under test; seconds from the "
             "round's provision start. The critical path "
             '(<span class="crit">red</span>) is the dependency chain that finished last; its '
             "pale part is time spent waiting on a dependency.</p>"]
    for rnd in rounds:
        title = f"Round {round_label(rnd, r.recovery_round)}"
        marks = critical if rnd == r.recovery_round else {}
        parts.append(f"<h3>{esc(title)}</h3>\n{_objects_chart(r, rnd, marks)}")
        parts.append(_objects_table(r, rnd, marks))
    return _section("objects", "Flux objects", "\n".join(parts))


def _round_window(r: DrillReport, rnd: int) -> tuple[float, list[tuple[str, float, float]]]:
    """(base offset, [(phase, start, end)] relative to the round's provision start)."""
    in_round = r.phases_in_round(rnd)
    base = next((p.offset_s for p in in_round if p.name == "provision"),
                in_round[0].offset_s if in_round else 0.0)
    bands = [(p.name, p.offset_s - base, p.offset_s - base + p.duration_s) for p in in_round
             if p.name in ("provision", "bootstrap", "converge")]
    return base, bands


def _objects_chart(r: DrillReport, rnd: int, critical: Mapping[str, CriticalHop]) -> str:
    objects = sorted(r.objects_in_round(rnd), key=_object_order)
    _, bands = _round_window(r, rnd)
    converge_end = max((end for name, _, end in bands if name == "converge"), default=0.0)
    ends = [converge_end] + [o.ready_after_s or 0.0 for o in objects]
    ttr = r.time_to_ready_s if rnd == r.recovery_round else None
    first = r.settings.get("first_build_ttr_s")
    if rnd == 1 and rnd != r.recovery_round and isinstance(first, (int, float)):
        ttr = float(first)
    if ttr is not None:
        ends.append(ttr)
    extent = max(ends) or 1.0
    rto = r.rto_target_s if rnd == r.recovery_round else None
    if rto is not None and rto <= extent * 1.5:
        extent = max(extent, rto)
    extent *= 1.03
    x0, plot = float(_LABEL_W), float(_W - _LABEL_W - _RIGHT)
    top = 54
    axis_y = top + _ROW * max(len(objects), 1) + 4
    height = axis_y + _AXIS_H

    def x(v: float) -> float:
        return x0 + plot * min(max(v, 0.0), extent) / extent

    parts = []
    for name, start, end in bands:
        xa, xb = x(start), x(end)
        parts.append(f'<rect x="{xa:.1f}" y="{top - 18}" width="{max(xb - xa, 0):.1f}" '
                     f'height="{axis_y - top + 18}" fill="{PHASE_COLOUR[name]}" opacity="0.07"/>')
        if xb - xa > 7 * len(name) + 6:  # a label wider than its band would run into the next
            parts.append(f'<text x="{xa + 3:.1f}" y="{top - 6}" class="bandl">{esc(name)}</text>')
    parts.append(_axis(x0, plot, extent, axis_y, top - 4))
    if ttr is not None:
        xt = x(ttr)
        parts.append(f'<line x1="{xt:.1f}" x2="{xt:.1f}" y1="{top - 50}" y2="{axis_y}" '
                     f'class="ttr"/><text x="{xt - 3:.1f}" y="{top - 24}" class="ttrl" '
                     f'text-anchor="end">converged {esc(fmt_seconds(ttr))}</text>')
    if rto is not None:
        if rto <= extent:
            xr = x(rto)
            parts.append(f'<line x1="{xr:.1f}" x2="{xr:.1f}" y1="{top - 50}" y2="{axis_y}" '
                         f'class="rto"/><text x="{xr + 3:.1f}" y="{top - 40}" class="rtol">'
                         f"RTO {esc(fmt_seconds(rto))}</text>")
        else:
            parts.append(f'<text x="{x0 + plot}" y="{top - 40}" class="rtol" text-anchor="end">'
                         f"RTO {esc(fmt_seconds(rto))} (off the chart)</text>")
    for i, o in enumerate(objects):
        parts.append(_object_row(o, top + _ROW * i, x, x0, converge_end, critical.get(o.ref)))
    if not objects:
        parts.append(f'<text x="{x0}" y="{top + 14}" class="lbl">no Flux object seen</text>')
    return _svg(height, "".join(parts), f"Flux objects of round {rnd}, applied to ready")


def _object_order(o: ObjectRecord) -> tuple[float, bool, float, str]:
    return (o.first_seen_s if o.first_seen_s is not None else math.inf,
            o.ready_after_s is None, o.ready_after_s or 0.0, o.ref)


def _object_row(o: ObjectRecord, y: float, x: Callable[[float], float], x0: float,
                converge_end: float, hop: CriticalHop | None) -> str:
    label = _object_label(o.ref)
    start = o.first_seen_s if o.first_seen_s is not None else 0.0
    done = o.ready and o.ready_after_s is not None
    end = o.ready_after_s if done and o.ready_after_s is not None else max(converge_end, start)
    tip = (f"{o.ref}\napplied (first seen) +{fmt_seconds(o.first_seen_s)}\n"
           + (f"ready +{fmt_seconds(o.ready_after_s)}" if done else "not ready")
           + (f"\ndepends on {', '.join(o.depends_on)}" if o.depends_on else "")
           + (f"\nrevision {o.revision}" if o.revision else "")
           + (f"\n{o.message}" if o.message and not done else ""))
    cls = "lbl crit-l" if hop else "lbl"
    shown = ("◆ " if hop else "") + truncate(label)
    out = [f'<text x="{x0 - 8}" y="{y + 14}" class="{cls}" text-anchor="end">'
           f"<title>{esc(label)}</title>{esc(shown)}</text>"]
    xa, xb = x(start), x(end)
    w = max(xb - xa, 1.5)
    if not done:
        out.append(f'<rect x="{xa:.1f}" y="{y + 4}" width="{w:.1f}" height="{_BAR}" '
                   f'fill="url(#notready)" stroke="{CRITICAL}" rx="2"><title>{esc(tip)}</title>'
                   f'</rect><text x="{xa + w + 5:.1f}" y="{y + 14}" class="val bad">not ready'
                   f"</text>")
        return "".join(out)
    if hop is None:
        out.append(f'<rect x="{xa:.1f}" y="{y + 4}" width="{w:.1f}" height="{_BAR}" '
                   f'fill="{OBJECT_BAR}" rx="2"><title>{esc(tip)}</title></rect>')
    else:
        reconcile_from = max(start, end - hop.reconcile_s)
        xr = x(reconcile_from)
        tip += (f"\ncritical path: waited on dependency {fmt_seconds(hop.waited_on_dependency_s)}"
                f", reconcile {fmt_seconds(hop.reconcile_s)}")
        out.append(f'<rect x="{xa:.1f}" y="{y + 4}" width="{w:.1f}" height="{_BAR}" '
                   f'fill="{CRITICAL}" fill-opacity="0.25" stroke="{CRITICAL}" rx="2" '
                   f'class="critical" data-ref="{esc(o.ref)}"><title>{esc(tip)}</title></rect>'
                   f'<rect x="{xr:.1f}" y="{y + 4}" width="{max(xb - xr, 1.5):.1f}" '
                   f'height="{_BAR}" fill="{CRITICAL}" rx="2"><title>{esc(tip)}</title></rect>')
    out.append(f'<circle cx="{xa:.1f}" cy="{y + 10}" r="2.5" class="applied"/>'
               f'<text x="{xb + 5:.1f}" y="{y + 14}" class="val">'
               f"{esc(fmt_seconds(o.ready_after_s))}</text>")
    return "".join(out)


def _objects_table(r: DrillReport, rnd: int, critical: Mapping[str, CriticalHop]) -> str:
    objects = sorted(r.objects_in_round(rnd), key=_object_order)
    if not objects:
        return ""
    rows = []
    for o in objects:
        state = (esc(fmt_seconds(o.ready_after_s)) if o.ready and o.ready_after_s is not None
                 else '<span class="bad">not ready</span>'
                 + (f" ({esc(o.reason)})" if o.reason else "")
                 + (f", waiting on {esc(o.waiting_on)}" if o.waiting_on else "")
                 + (f": {esc(o.message)}" if o.message else ""))
        ref = _ref(o.ref) + (' <span class="crit">critical</span>' if o.ref in critical else "")
        rows.append((ref, esc(fmt_seconds(o.first_seen_s)), state,
                     esc(", ".join(o.depends_on)) or "none", _code(o.revision or "none")))
    table = _table(("Object", "Applied (first seen)", "Ready", "Depends on", "Revision"), rows)
    return (f"<details><summary>{len(objects)} objects of round {rnd} as a table</summary>"
            f"\n{table}\n</details>")


# -- where the time went --------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    """A slice of the recovery's time-to-ready, in seconds from its provision start."""

    label: str
    start: float
    end: float
    kind: str
    """`phase`, `hop`, `gap` or `tail`: the colour and the explanation it gets."""


def ttr_segments(r: DrillReport) -> list[Segment]:
    """Split [0, TTR] of the recovery round into consecutive slices: provision, bootstrap, then
    each critical-path hop's reconcile, with what is left in between called out as gaps.

    Waiting on a dependency overlaps the dependency's own reconcile, so it is not a slice of
    its own; the hop table lists it.
    """
    if r.time_to_ready_s is None:
        return []
    ttr = r.time_to_ready_s
    _, bands = _round_window(r, r.recovery_round)
    wanted: list[tuple[str, float, float, str]] = [
        (name, start, end, "phase") for name, start, end in bands if name != "converge"]
    wanted += [(_object_label(h.ref), h.ready_after_s - h.reconcile_s, h.ready_after_s, "hop")
               for h in r.critical_path]
    out: list[Segment] = []
    cursor = 0.0
    for label, start, end, kind in sorted(wanted, key=lambda w: (w[1], w[2])):
        end = min(end, ttr)
        if start > cursor + 0.05:
            out.append(Segment("not on a hop (controllers picking up work)", cursor, start,
                               "gap"))
            cursor = start
        start = max(start, cursor)
        if end > start:
            out.append(Segment(label, start, end, kind))
            cursor = end
    if ttr > cursor + 0.05:
        out.append(Segment("until the harness saw every object ready", cursor, ttr, "tail"))
    return out


_SEGMENT_COLOUR = {"gap": "#d0d7de", "tail": "#afb8c1"}


def _where_the_time_went(r: DrillReport) -> str:
    flux = r.settings.get("flux", r.settings.get("flux_flags"))
    flux = flux if isinstance(flux, Mapping) else {}
    requeue = flux.get("requeue_dependency")
    requeue_s = parse_duration(requeue) if requeue is not None else None
    intro = ("<p>The critical path is the dependency chain that finished last. A hop "
             "<em>waits on its dependency</em> until the object it depends on (its "
             "<code>dependsOn</code>, its source or the Kustomization that applies it) is ready; "
             "then it <em>reconciles</em>: Flux notices the dependency on its next requeue, "
             "builds, applies and runs health checks.")
    if requeue is not None:
        intro += (f" This drill ran with <code>--requeue-dependency={esc(requeue)}</code> "
                  "(Flux's default is 30s): a blocked object is re-checked that often, so each "
                  "hop after a dependency can add up to that much.")
    intro += "</p>"
    if not r.critical_path:
        return _section("time", "Where the time went",
                        intro + "<p>No critical path was recorded (nothing became ready).</p>")
    parts = [intro, _segments_chart(r)]
    rows = []
    for h in r.critical_path:
        kind = h.ref.partition("/")[0]
        waited = h.waited_on_dependency_s > 0
        rows.append((_ref(h.ref), esc(fmt_seconds(h.ready_after_s)),
                     esc(fmt_seconds(h.waited_on_dependency_s)), esc(fmt_seconds(h.reconcile_s)),
                     _split(h, requeue_s if waited else None), _logged(h),
                     _bound_by(kind, requeue, waited=waited)))
    parts.append(_table(("Hop", "Ready at", "Waited on dependency", "Reconcile",
                         "Reconcile split (bound)", "As the controller logged it", "Bound by"),
                        rows, "hops"))
    return _section("time", "Where the time went", "\n".join(parts))


_SOURCE_KINDS = ("GitRepository", "OCIRepository", "HelmRepository", "HelmChart", "Bucket")


def _split(hop: CriticalHop, requeue_s: float | None) -> str:
    """The reconcile of a hop that waited: how much of it the requeue interval can explain.

    Only a bound: the drill sees when a dependency became ready, not when Flux looked again.
    """
    if requeue_s is None:
        if hop.ref.partition("/")[0] in _SOURCE_KINDS:
            return "no wait on a dependency: fetch + artifact"
        return "no wait on a dependency: apply + health checks"
    if hop.reconcile_s <= requeue_s:
        return f"within one requeue interval ({esc(fmt_seconds(requeue_s))})"
    return (f"up to {esc(fmt_seconds(requeue_s))} requeue, at least "
            f"{esc(fmt_seconds(hop.reconcile_s - requeue_s))} apply + health checks")


_LOGGED = (("requeue_delay_s", "requeue delay"), ("fetch_build_apply_s", "fetch + build + apply"),
           ("health_check_s", "health checks"), ("reconcile_s", "whole reconcile"))


def _logged(hop: CriticalHop) -> str:
    """The hop's reconcile as its controller's log tells it (measured, not bounded)."""
    if not hop.split:
        return "-"
    parts = [f"{label} <b>{esc(fmt_seconds(float(v)))}</b>" for key, label in _LOGGED
             if isinstance((v := hop.split.get(key)), (int, float))]
    checks = hop.split.get("dependency_checks")
    if checks:
        parts.append(f"{checks} dependency check{'s' if checks != 1 else ''} before")
    return "; ".join(parts) or "-"


def _bound_by(kind: str, requeue: object, *, waited: bool) -> str:
    dep = (f"<code>--requeue-dependency={esc(requeue)}</code> (a blocked object is re-checked "
           "that often); "
           if waited and requeue is not None else "")
    if kind in _SOURCE_KINDS:
        return ("source-controller fetch of the artifact (first fetch is immediate; "
                "<code>spec.interval</code> only matters after it) and the Git server")
    if kind == "HelmRelease":
        return (dep + "chart fetch, <code>helm install</code> and waiting for its resources "
                "(<code>spec.timeout</code>)")
    return (dep + "kustomize build, server-side apply, health checks (<code>spec.wait</code>/"
            "<code>spec.healthChecks</code>, polled until <code>spec.timeout</code>)")


def _segments_chart(r: DrillReport) -> str:
    segments = ttr_segments(r)
    ttr = r.time_to_ready_s
    if not segments or not ttr:
        return ""
    x0, plot = 20.0, float(_W - 40)
    parts = []
    hop_colours = ("#d1242f", "#e16f24", "#bf8700", "#cf222e", "#fa4549", "#9a6700")
    hop_i = 0
    legend = []
    for s in segments:
        if s.kind == "phase":
            colour = PHASE_COLOUR.get(s.label, "#8c959f")
        elif s.kind == "hop":
            colour = hop_colours[hop_i % len(hop_colours)]
            hop_i += 1
        else:
            colour = _SEGMENT_COLOUR[s.kind]
        xa = x0 + plot * s.start / ttr
        w = plot * (s.end - s.start) / ttr
        tip = f"{s.label}: {fmt_seconds(s.end - s.start)} (+{fmt_seconds(s.start)})"
        parts.append(f'<rect x="{xa:.1f}" y="8" width="{max(w, 1):.1f}" height="26" '
                     f'fill="{colour}" stroke="#fff"><title>{esc(tip)}</title></rect>')
        if w > 60:
            parts.append(f'<text x="{xa + w / 2:.1f}" y="25" class="seg" text-anchor="middle">'
                         f"{esc(fmt_seconds(s.end - s.start))}</text>")
        legend.append((colour, s.label, s.end - s.start))
    svg = _svg(44, "".join(parts), "Time-to-ready split into consecutive slices")
    items = "".join(f'<li><span class="sw" style="background:{c}"></span>{esc(label)} '
                    f"<b>{esc(fmt_seconds(d))}</b> ({d / ttr:.0%})</li>"
                    for c, label, d in legend)
    return (f"<p>Time-to-ready ({esc(fmt_seconds(ttr))}) from left to right: the phases before "
            f"Flux had work, then each critical-path hop's reconcile.</p>\n{svg}\n"
            f'<ol class="legend">{items}</ol>')


# -- manual steps, settings, notes, diagnostics ---------------------------------------------

def _manual_steps(r: DrillReport) -> str:
    ttr = r.time_to_ready_s
    parts = []
    rec = r.recovery_manual_steps
    if rec:
        spent = r.recovery_manual_time_s
        share = f", {spent / ttr:.0%} of time-to-ready" if ttr else ""
        autom = sum(m.automatable for m in rec)
        parts.append(f"<p><b>{len(rec)}</b> manual step{'' if len(rec) == 1 else 's'} in the "
                     f"recovery took {esc(fmt_seconds(spent))}{esc(share)}; {autom} could be "
                     f"automated.</p>")
    rows = []
    for m in sorted(r.manual_steps, key=lambda m: (m.round == 0, m.round)):
        in_ttr = m.round == r.recovery_round and ttr
        share_cell = ""
        if in_ttr and ttr:
            pct = m.duration_s / ttr
            share_cell = (f'<span class="meter"><span style="width:{min(pct, 1) * 100:.1f}%">'
                          f"</span></span> {pct:.0%}")
        rows.append((esc(round_label(m.round, r.recovery_round)), _code(m.id),
                     esc(m.description), esc(m.performed_by), esc(fmt_seconds(m.duration_s)),
                     share_cell, "yes" if m.automatable else "no"))
    if rows:
        parts.append(_table(("Round", "Step", "Description", "Performed by", "Duration",
                             "Share of TTR", "Automatable"), rows, "manual"))
    else:
        parts.append("<p>None.</p>")
    if r.automated_steps:
        auto = [(esc(round_label(a.round, r.recovery_round)), _code(a.id), esc(a.description),
                 esc(a.performed_by), esc(fmt_seconds(a.duration_s)))
                for a in r.automated_steps]
        parts.append("<h3>Automated by drdrill</h3>\n<p>Steps a recovery needs that drdrill "
                     "performed itself; not counted as manual steps.</p>\n"
                     + _table(("Round", "Step", "Description", "Performed by", "Duration"),
                              auto))
    if r.manual_inputs:
        inputs = [(esc(i.get("kind", "")), _code(f"{i.get('namespace', '')}/{i.get('name', '')}"),
                   esc(", ".join(str(n) for n in i.get("needed_by", ()) or ())))
                  for i in r.manual_inputs]
        parts.append("<h3>Inputs that are not in Git</h3>\n"
                     + _table(("Kind", "Object", "Needed by"), inputs))
    if r.external_dependencies:
        deps = [(esc(str(d.get("kind", ""))), _code(str(d.get("url", ""))),
                 esc(", ".join(str(u) for u in list(d.get("used_by") or ())[:3])))
                for d in r.external_dependencies]
        parts.append("<h3>External dependencies (must be reachable)</h3>\n"
                     + _table(("Kind", "URL", "Used by"), deps))
    return _section("manual", "Manual steps", "\n".join(parts))


def _egress(r: DrillReport) -> str:
    """What this recovery tried to reach (the mirror, the Git server) and what was refused."""
    e = r.egress
    if not e:
        return ""
    mirror = e.get("mirror") or {}
    span = mirror.get("pull_span_s")
    pulled = (f"{mirror.get('images_from_mirror', 0)} images and "
              f"{mirror.get('charts_from_mirror', 0)} charts from the mirror, "
              f"{int(mirror.get('pulled_bytes') or 0) / 1e6:.1f} MB pulled"
              + (f" over {float(span):.0f} s" if span is not None else ""))
    parts = [f"<p>Egress policy <b>{esc(e.get('policy', ''))}</b>"
             + (f"; mirror {_code(mirror.get('address', ''))}, {esc(pulled)}" if mirror else "")
             + ".</p>"]
    reached = e.get("reached") or []
    if reached:
        parts.append("<h3>Reached</h3>\n" + _table(
            ("What", "Host", "Through", "Pulls"),
            [(esc(x.get("what", "")), _code(x.get("repository") or x.get("host")),
              esc(x.get("through", "")), esc(x.get("pulls", ""))) for x in reached]))
    blocked = e.get("blocked") or []
    parts.append("<h3>Blocked</h3>\n" + (_table(
        ("Pod", "Owner", "Host", "Refused by", "Attempts"),
        [(_code(f"{b.get('namespace', '')}/{b.get('pod', '')}"), _code(b.get("owner", "")),
          _code(b.get("host", "")), esc(b.get("refused_by", "")), esc(b.get("attempts", "")))
         for b in blocked]) if blocked else "<p>Nothing was refused.</p>"))
    writers = e.get("writers_blocked") or []
    if writers:
        parts.append("<h3>External writers blocked</h3>\n" + _table(
            ("Pod", "Owner", "Would have written", "Host"),
            [(_code(f"{w.get('namespace', '')}/{w.get('pod', '')}"), _code(w.get("owner", "")),
              esc(w.get("writer", "")), _code(w.get("host", ""))) for w in writers]))
    return _section("egress", "What this recovery tried to reach", "\n".join(parts))


def _settings(settings: Mapping[str, Any]) -> str:
    parts = []
    versions = settings.get("versions")
    if isinstance(versions, Mapping) and versions:
        sources = settings.get("tool_sources")
        sources = sources if isinstance(sources, Mapping) else {}
        tools = [(esc(tool), _code(v), *((esc(sources.get(tool, "")),) if sources else ()))
                 for tool, v in sorted(versions.items())]
        header = ("Tool", "Version", "From") if sources else ("Tool", "Version")
        parts.append("<h3>Versions</h3>\n" + _table(header, tools))
    for key, title in (("flux", "Flux settings"), ("flux_flags", "Flux settings"),
                       ("provider", "Provider")):
        value = settings.get(key)
        if isinstance(value, Mapping) and value:
            origin = flux_setting_rows(value) if key != "provider" else []
            if origin:
                parts.append("<h3>Flux settings and where each came from</h3>\n" + _table(
                    ("Controller", "Setting", "From"),
                    [(esc(c), _code(a), esc(src)) for c, a, src in origin]))
                value = {k: v for k, v in value.items() if k != "settings"}
            rows = [(_code(k), _value(v)) for k, v in flatten(value)]
            table = _table(("Setting", "Value"), rows, "kv")
            if key == "provider":  # long process flags; useful when debugging, not at a glance
                table = (f"<details><summary>{len(rows)} provider settings (process flags, "
                         f"versions)</summary>\n{table}\n</details>")
            parts.append(f"<h3>{esc(title)}</h3>\n" + table)
    # first_build_ttr_s is drawn in "Time-to-ready vs RTO".
    shown = {"versions", "tool_sources", "flux", "flux_flags", "provider", "local_run_changes",
             "first_build_ttr_s"}
    other = {k: v for k, v in settings.items() if k not in shown}
    if other:
        rows = [(_code(k), _code(v) if v != "" else "n/a") for k, v in flatten(other)]
        parts.append("<h3>Drill</h3>\n" + _table(("Setting", "Value"), rows, "kv"))
    changes = settings.get("local_run_changes")
    if isinstance(changes, (list, tuple)) and changes:
        parts.append("<h3>Changed to run locally</h3>\n<ul>"
                     + "".join(f"<li>{esc(c)}</li>" for c in changes) + "</ul>")
    if not parts:
        return ""
    return _section("settings", "Versions and settings", "\n".join(parts))


def _value(text: str) -> str:
    """A setting's value; a command line becomes one chip per flag so it wraps between flags."""
    if not text:
        return "n/a"
    if text.startswith("-") and " -" in text:
        return " ".join(f'<code class="flag">{esc(flag)}</code>' for flag in text.split(" "))
    return _code(text)


def _notes(r: DrillReport) -> str:
    if not r.notes:
        return ""
    return _section("notes", "Notes", "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in r.notes)
                    + "</ul>")


def _diagnostics(diagnostics: Mapping[str, str]) -> str:
    if not diagnostics:
        return ""
    items = []
    for label, path in sorted(diagnostics.items()):
        # Only relative paths inside the report folder become links; anything else is text.
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^/|(^|/)\.\.(/|$)", path):
            items.append(f"<li>{esc(label)}: {_code(path)}</li>")
        else:
            items.append(f'<li><a href="{esc(quote(path))}">{esc(label)}</a> '
                         f'<span class="path">{esc(path)}</span></li>')
    return _section("diagnostics", "Diagnostics",
                    "<p>Collected before teardown; paths are relative to this report.</p>"
                    f'<ul class="diag">{"".join(items)}</ul>')


_SVG_DEFS = ('<defs><pattern id="notready" width="6" height="6" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffebe9"/>'
             '<line x1="0" y1="0" x2="0" y2="6" stroke="#cf222e" stroke-width="2"/></pattern>'
             "</defs>")

PAGE_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",
sans-serif;color:var(--fg);background:#fff}
main{max-width:1160px;margin:0 auto;padding:0 20px 40px}
h1{margin:0;font-size:22px}h2{font-size:18px;margin:28px 0 8px;padding-bottom:4px;
border-bottom:1px solid var(--line)}h3{font-size:15px;margin:18px 0 6px}
.banner{display:flex;gap:20px;align-items:center;color:#fff;padding:16px 20px;
border-radius:0 0 8px 8px}
.banner .verdict{font-size:30px;font-weight:800;letter-spacing:1px;padding:6px 14px;
border:3px solid rgba(255,255,255,.8);border-radius:6px}
.banner .sub{margin:4px 0 0;font-size:15px}.banner .why{margin:6px 0 0;font-family:ui-monospace,
monospace;font-size:13px;background:rgba(0,0,0,.18);padding:4px 8px;border-radius:4px}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.tile{flex:1 1 160px;border:1px solid var(--line);border-radius:6px;padding:8px 12px;
background:var(--bg)}.tile .k{color:var(--muted);font-size:12px;text-transform:uppercase;
letter-spacing:.4px}.tile .v{font-size:20px;font-weight:600}.tile .v.bad{color:#cf222e}
table{border-collapse:collapse;width:100%;margin:8px 0;font-size:13px}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:var(--bg)}table.kv td:first-child{width:1%;white-space:nowrap;color:var(--muted)}
table.hops td:first-child{width:26%}table.hops td:nth-child(n+2):nth-child(-n+4){white-space:nowrap}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
code{background:var(--bg);padding:1px 4px;border-radius:4px;overflow-wrap:anywhere}
code.flag{display:inline-block;max-width:100%;margin:1px 0}
pre.error{background:#ffebe9;border:1px solid #ff8182;padding:10px;white-space:pre-wrap;
word-break:break-word;border-radius:6px}
.err{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px;color:#a40e26}
.badge{display:inline-block;padding:0 8px;border-radius:10px;color:#fff;font-size:12px}
.badge.passed{background:#1a7f37}.badge.failed{background:#cf222e}
.badge.broken{background:#b35900}.badge.skipped{background:#6e7781}
.good{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.crit{color:#d1242f;font-weight:600}
svg.chart{width:100%;height:auto;display:block;margin:6px 0}
svg text{font-family:system-ui,"Liberation Sans",sans-serif;font-size:12px;fill:#1f2328}
svg .tick{font-size:11px;fill:#59636e}svg .grid{stroke:#eaeef2}svg .axis{stroke:#8c959f}
svg .lbl{font-size:12px}svg .crit-l{fill:#d1242f;font-weight:600}
svg .val,svg .rtol,svg .ttrl,svg .bandl{paint-order:stroke;stroke:#fff;stroke-width:3px;
stroke-linejoin:round}
svg .val{font-size:11px;fill:#59636e}svg .val.bad,svg .bad{fill:#cf222e;font-weight:600}
svg .ttrband{fill:#2da44e;opacity:.08}svg .bandl{font-size:11px;fill:#59636e}
svg .rto{stroke:#cf222e;stroke-dasharray:5 3;stroke-width:1.5}
svg .rtol{font-size:11px;fill:#cf222e;font-weight:600}
svg .ttr{stroke:#1a7f37;stroke-width:1.5}svg .ttrl{font-size:11px;fill:#1a7f37;font-weight:600}
svg .applied{fill:#1f2328}svg .seg{fill:#fff;font-size:11px;font-weight:600}
ol.legend{columns:2;font-size:13px;padding-left:20px}
.sw{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}
.meter{display:inline-block;width:80px;height:8px;background:#eaeef2;border-radius:4px;
vertical-align:middle}.meter span{display:block;height:8px;background:#bf8700;border-radius:4px}
details{margin:6px 0 14px}summary{cursor:pointer;color:var(--muted)}
ul.diag{columns:2;column-gap:30px}ul.diag li{break-inside:avoid}
ul.diag .path{color:var(--muted);font-size:12px;margin-left:6px}
footer{margin-top:30px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);
padding-top:8px}
"""
