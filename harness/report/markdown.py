"""Markdown reports: `render_summary` is report.md, short enough for a CI job summary or a PR
comment (no relative links: they break there); `render_markdown` is the whole report (Allure
attaches it)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.report.model import DrillReport, ObjectRecord, PhaseRecord
from harness.report.redact import redact, strip_control

SLOWEST = 5
_ERROR_IN_CELL = 100
SUMMARY_ROWS = 5
"""At most this many failed phases / objects not ready in the summary; the rest are counted."""
SUMMARY_ERROR_LINES = 8


def _egress_facts(r: DrillReport) -> list[str]:
    """What this recovery tried to reach, in two lines: the mirror, and who was refused."""
    e = r.egress
    if not e:
        return []
    out = [f"- Egress policy {code(e.get('policy', ''))}"
           + (f": {_pulled(e['mirror'])}" if e.get("mirror") else "")]
    blocked = e.get("blocked") or []
    writers = e.get("writers_blocked") or []
    if blocked:
        shown = writers or blocked
        out.append(f"- **{len(blocked)}** outside host{'' if len(blocked) == 1 else 's'} "
                   f"refused" + ("; external writers blocked: " if writers else ": ")
                   + ", ".join(f"{code(b.get('namespace', '') + '/' + b.get('pod', ''))} -> "
                               f"{code(b.get('host', ''))}" for b in shown[:SUMMARY_ROWS]))
    return out


def render_summary(report: DrillReport) -> str:
    """report.md: verdict, TTR vs RTO, manual steps, what failed, where the full report is."""
    r = report
    lines = [f"## drdrill: {code(r.scenario)} on {code(r.provider)}: {verdict_marker(r.verdict)}",
             "", f"{code(r.repo_id or r.repo)}" + (f" {code(r.cluster)}" if r.cluster else "")
             + (f" at {code(r.revision[:12])}" if r.revision else "") + f" · run {code(r.run_id)}",
             ""]
    ttr = fmt_seconds(r.time_to_ready_s) if r.time_to_ready_s is not None else "not reached"
    facts = [f"- Time-to-ready: **{ttr}** ({rto_text(r)})"]
    fig = r.recovery_figure
    if fig is not None and fig.name != "time_to_rebuild_s":
        judged = "" if fig.met is None else (", met" if fig.met else ", **not met**")
        limit = f" (limit {fmt_seconds(fig.limit_s)}{judged})" if fig.limit_s is not None else ""
        facts.append(f"- **{figure_text(r)}**{limit}")
    steps = r.recovery_manual_steps
    auto = list(dict.fromkeys(a.id for a in r.automated_steps))
    facts.append(f"- **{len(steps)}** manual step{'' if len(steps) == 1 else 's'} in the recovery"
                 + (": " + ", ".join(code(m.id) for m in steps) if steps else "")
                 + ("; automated by drdrill: " + ", ".join(code(a) for a in auto) if auto
                    else ""))
    facts += _egress_facts(r)
    lines += facts
    failed = [p for p in r.phases if p.outcome in ("failed", "broken")]
    not_ready = [o for o in r.objects if not o.ready and o.round == r.recovery_round] or \
        [o for o in r.objects if not o.ready]
    problems: list[str] = []
    for p in failed[:SUMMARY_ROWS]:
        problems.append(f"- phase {code(p.name)} (round {p.round}) {p.outcome}"
                        + (f": {_first_line(p.error)}" if p.error else ""))
    for o in not_ready[:SUMMARY_ROWS]:
        why = o.reason or "not ready"
        problems.append(f"- {code(o.ref)}: {why}"
                        + (f", {_first_line(o.message)}" if o.message else "")
                        + (f" (waiting on {o.waiting_on})" if o.waiting_on else ""))
    unrecovered = [i for f in r.recovery_figures for i in f.items if i.value_s is None]
    for item in unrecovered[:SUMMARY_ROWS]:
        problems.append(f"- {code(item.ref)}: not recovered" + (f", {item.note}" if item.note
                                                               else ""))
    more = (max(0, len(failed) - SUMMARY_ROWS) + max(0, len(not_ready) - SUMMARY_ROWS)
            + max(0, len(unrecovered) - SUMMARY_ROWS))
    if more:
        problems.append(f"- and {more} more in the full report")
    problems += [f"- Left behind: {item} (fix: `drdrill gc --run-id {r.run_id}`)"
                 for item in r.leftovers]
    if problems:
        title = ("Not ready when the drill stopped" if not_ready else "What failed")
        lines += ["", f"### {title}", "", *problems]
    if r.error:
        err = r.error.strip().splitlines()
        shown = err[:SUMMARY_ERROR_LINES] + (["…"] if len(err) > SUMMARY_ERROR_LINES else [])
        longest = max((len(m) for m in re.findall(r"`{3,}", r.error)), default=2)
        fence = "`" * (longest + 1)
        lines += ["", f"{fence}text", *shown, fence]
    lines += ["", "Full report: `index.html` (timeline, every object, critical path, settings) "
                  "and `report.json` in the run's report folder"
                  + (f" `{r.run_id}`" if r.run_id else "") + "."]
    return redact(strip_control("\n".join(lines) + "\n"))


def render_markdown(report: DrillReport) -> str:
    """The whole report as GitHub-flavoured Markdown, secrets redacted."""
    parts = [
        _headline(report),
        _summary(report),
        _figures(report),
        _phases(report.phases, report.recovery_round),
        _not_ready(report),
        _slowest(report),
        _critical_path(report),
        _manual_steps(report),
        _automated_steps(report),
        _external(report),
        _egress(report),
        _settings(report.settings),
        _error(report.error),
        _bullets("Left behind (remove with `drdrill gc --run-id " + report.run_id + "`)",
                 report.leftovers),
        _bullets("Notes", report.notes),
        _diagnostics(report.diagnostics),
    ]
    return redact(strip_control("\n\n".join(p for p in parts if p) + "\n"))


# -- formatting helpers (allure.py uses some of them too) -----------------------------------

def fmt_seconds(seconds: float | None) -> str:
    """`12.3s`, `4m 05.2s`, `1h 02m 05s`; `n/a` when there is no number."""
    if seconds is None:
        return "n/a"
    sign, s = ("-" if seconds < 0 else ""), abs(seconds)
    if s < 60:
        return f"{sign}{s:.1f}s"
    if s < 3600:
        return f"{sign}{int(s // 60)}m {s % 60:04.1f}s"
    return f"{sign}{int(s // 3600)}h {int(s % 3600 // 60):02d}m {int(s % 60):02d}s"


def figure_text(report: DrillReport) -> str:
    """The headline recovery figure in words: `time-to-revert 14.2s`; empty without one."""
    fig = report.recovery_figure
    if fig is None:
        return ""
    value = fmt_seconds(fig.value_s) if fig.value_s is not None else "not reached"
    return f"{fig.label} {value}"


def manual_text(report: DrillReport) -> str:
    """`2 manual steps (1 automated by drdrill)`: what a human must do, and what drdrill did."""
    steps = report.recovery_manual_steps
    auto = [a for a in report.automated_steps if a.round == report.recovery_round]
    text = f"{len(steps)} manual step{'' if len(steps) == 1 else 's'}"
    return text + (f" ({len(auto)} more automated by drdrill)" if auto else "")


def verdict_marker(verdict: str) -> str:
    return f"**{verdict.upper()}**"


def rto_text(report: DrillReport) -> str:
    """TTR against the RTO in words: `RTO 5m 00.0s, 3m 35.8s to spare` or `..., over by 24.2s`."""
    if report.rto_target_s is None:
        return "no RTO target"
    margin = report.rto_margin_s
    rto = f"RTO {fmt_seconds(report.rto_target_s)}"
    if margin is None:
        return f"{rto}, not reached"
    if margin >= 0:
        return f"{rto}, {fmt_seconds(margin)} to spare"
    return f"{rto}, **over by {fmt_seconds(-margin)}**"


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as (`dotted.key`, text) pairs; lists become space-separated text."""
    out: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out.append((name, " ".join(str(v) for v in value)))
        else:
            out.append((name, "" if value is None else str(value)))
    return out


def flux_setting_rows(flux: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(controller, flag, source) of each Flux setting a drill ran with (report schema's
    settings.flux.settings)."""
    items = flux.get("settings")
    if not isinstance(items, (list, tuple)):
        return []
    return [(str(i.get("controller", "")), str(i.get("arg", "")), str(i.get("source", "")))
            for i in items if isinstance(i, Mapping)]


def round_label(rnd: int, recovery_round: int) -> str:
    if rnd == 0:
        return "after"
    if rnd == recovery_round:
        return f"{rnd} (recovery)"
    return f"{rnd} (first build)" if rnd == 1 else str(rnd)


def cell(text: object) -> str:
    """Text that is safe inside a table cell: pipes escaped, line breaks as `<br>`."""
    value = str(text).replace("|", "\\|")
    return re.sub(r"\r?\n", "<br>", value.strip())


def code(text: object) -> str:
    """An inline code span that survives backticks in `text`."""
    value = str(text)
    longest = max((len(m) for m in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _first_line(text: str | None, limit: int = _ERROR_IN_CELL) -> str:
    lines = (text or "").strip().splitlines()
    line = lines[0].strip() if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- sections -------------------------------------------------------------------------------

def _headline(r: DrillReport) -> str:
    ttr = (f"time-to-ready **{fmt_seconds(r.time_to_ready_s)}**" if r.time_to_ready_s is not None
           else "time-to-ready **not reached**")
    steps = r.recovery_manual_steps
    manual = f"**{len(steps)}** manual step{'' if len(steps) == 1 else 's'} in the recovery"
    if steps:
        spent = r.recovery_manual_time_s
        share = (f", {spent / r.time_to_ready_s:.0%} of time-to-ready"
                 if r.time_to_ready_s else "")
        manual += f" ({fmt_seconds(spent)}{share})"
    title = f"## drdrill: {code(r.scenario)} on {code(r.provider)}: {verdict_marker(r.verdict)}"
    auto = [a for a in r.automated_steps if a.round == r.recovery_round]
    if auto:
        manual += (f"; {len(auto)} automated by drdrill ("
                   + ", ".join(code(a.id) for a in auto) + ")")
    fig = f" · **{figure_text(r)}**" if r.recovery_figure is not None else ""
    return f"{title}\n\n{verdict_marker(r.verdict)}{fig} · {ttr} · {rto_text(r)} · {manual}"


def _summary(r: DrillReport) -> str:
    recovery = r.objects_in_round(r.recovery_round)
    rows: list[tuple[str, object]] = [
        ("Verdict", verdict_marker(r.verdict)),
        ("Scenario", r.scenario),
        ("Provider", r.provider),
        ("Cluster", code(r.cluster) if r.cluster else "n/a"),
        ("Repository", code(r.repo)),
        ("Revision", code(r.revision) if r.revision else "n/a"),
        ("Run", code(r.run_id)),
        ("Started", r.started_at),
        ("Time-to-ready (recovery)", fmt_seconds(r.time_to_ready_s)),
    ]
    first = r.settings.get("first_build_ttr_s")
    if isinstance(first, (int, float)) and r.recovery_round != 1:
        rows.append(("Time-to-ready (first build)", fmt_seconds(float(first))))
    rows += [
        ("RTO target", rto_text(r) if r.rto_target_s is not None else "none"),
        ("Manual steps (recovery / all)", f"{len(r.recovery_manual_steps)} / "
                                          f"{r.manual_step_count}"),
        ("Flux objects ready (recovery)", f"{sum(o.ready for o in recovery)} / {len(recovery)}"),
    ]
    return "### Summary\n\n" + _table(("", ""), rows)


def _figures(r: DrillReport) -> str:
    if not r.recovery_figures:
        return ""
    rows: list[tuple[object, ...]] = []
    for f in r.recovery_figures:
        met = "" if f.met is None else ("met" if f.met else "**not met**")
        limit = f" (limit {fmt_seconds(f.limit_s)})" if f.limit_s is not None else ""
        rows.append((f.label, fmt_seconds(f.value_s) if f.value_s is not None
                     else "**not reached**", (met + limit).strip(), f.description))
        rows += [(f"· {i.ref}", fmt_seconds(i.value_s) if i.value_s is not None else "",
                  "", i.note) for i in f.items]
    return "### Recovery figures\n\n" + _table(("Figure", "Value", "Expectation", "What"), rows)


def _automated_steps(r: DrillReport) -> str:
    if not r.automated_steps:
        return ""
    rows = [(round_label(a.round, r.recovery_round), code(a.id), a.description, a.performed_by,
             fmt_seconds(a.duration_s)) for a in r.automated_steps]
    return ("### Automated by drdrill\n\nSteps a recovery needs that drdrill performed itself; "
            "not counted as manual steps.\n\n"
            + _table(("Round", "Step", "Description", "Performed by", "Duration"), rows))


def _phases(phases: Sequence[PhaseRecord], recovery_round: int) -> str:
    if not phases:
        return "### Phases\n\nNo phase ran."

    def outcome(p: PhaseRecord) -> str:
        if p.outcome == "passed":
            return "passed"
        why = _first_line(p.error)
        return f"**{p.outcome}**" + (f": {why}" if why else "")

    rows = [(round_label(p.round, recovery_round), p.name, fmt_seconds(p.duration_s), outcome(p))
            for p in phases]
    return "### Phases\n\n" + _table(("Round", "Phase", "Duration", "Outcome"), rows)


def _not_ready(r: DrillReport) -> str:
    """Every object seen but not ready when the drill stopped, with what it waited on."""
    objects = [o for o in r.objects if not o.ready]
    if not objects:
        return ""
    rows = [(code(o.ref), f"round {o.round}", o.reason or "none", o.waiting_on or "",
             _first_line(o.message) if o.message else "") for o in objects]
    return ("### Not ready when the drill stopped\n\n"
            + _table(("Object", "Round", "Reason", "Waiting on", "Flux's message"), rows))


def _slowest(r: DrillReport) -> str:
    objects = r.objects_in_round(r.recovery_round)
    if not objects:
        return ""

    def key(o: ObjectRecord) -> tuple[int, float]:
        # Never ready is the slowest of all.
        return (0, 0.0) if o.ready_after_s is None else (1, -o.ready_after_s)

    ranked = sorted(objects, key=key)[:SLOWEST]
    rows = [(code(o.ref),
             fmt_seconds(o.ready_after_s) if o.ready_after_s is not None
             else "not ready" + (f": {_first_line(o.message)}" if o.message else ""),
             ", ".join(o.depends_on) or "none")
            for o in ranked]
    more = len(objects) - len(ranked)
    tail = f"\n\n{more} more in `report.json`." if more > 0 else ""
    return (f"### Slowest objects (round {r.recovery_round})\n\n"
            + _table(("Object", "Ready after", "Depends on"), rows) + tail)


def _critical_path(r: DrillReport) -> str:
    if not r.critical_path:
        return ""
    rows = [(code(h.ref), fmt_seconds(h.ready_after_s), fmt_seconds(h.waited_on_dependency_s),
             fmt_seconds(h.reconcile_s)) for h in r.critical_path]
    return ("### Critical path\n\n"
            + _table(("Hop", "Ready at", "Waited on dependency", "Reconcile"), rows))


def _external(r: DrillReport) -> str:
    """What must be reachable for this recovery, and what the embedded cluster cannot run."""
    out = []
    if r.external_dependencies:
        rows = [(str(d.get("kind", "")), code(str(d.get("url", ""))),
                 ", ".join(str(u) for u in list(d.get("used_by") or ())[:3])
                 + (" …" if len(d.get("used_by") or ()) > 3 else ""))
                for d in r.external_dependencies]
        out.append("### External dependencies\n\n" + _table(("Kind", "URL", "Used by"), rows))
    if r.embedded_limits:
        limits = [(code(str(x.get("object", ""))), str(x.get("why", "")))
                  for x in r.embedded_limits]
        out.append("### Not on the embedded cluster (kind or lab can)\n\n"
                   + _table(("Object", "Why"), limits))
    return "\n\n".join(out)


def _pulled(mirror: Mapping[str, Any]) -> str:
    span = mirror.get("pull_span_s")
    return (f"{mirror.get('images_from_mirror', 0)} images and "
            f"{mirror.get('charts_from_mirror', 0)} charts from the mirror, "
            f"{int(mirror.get('pulled_bytes') or 0) / 1e6:.1f} MB pulled"
            + (f" over {float(span):.0f} s" if span is not None else ""))


def _egress(r: DrillReport) -> str:
    """What this recovery tried to reach: through the mirror, and what the guard refused."""
    e = r.egress
    if not e:
        return ""
    out = ["### What this recovery tried to reach\n\nEgress policy: "
           + code(e.get("policy", ""))
           + (f"; mirror {code(e['mirror'].get('address', ''))}, "
              + _pulled(e["mirror"]) if e.get("mirror") else "")]
    reached = e.get("reached") or []
    if reached:
        out.append(_table(("Reached", "Host", "Through", "Pulls"),
                          [(str(x.get("what", "")), code(x.get("repository") or x.get("host")),
                            str(x.get("through", "")), str(x.get("pulls", "")))
                           for x in reached]))
    blocked = e.get("blocked") or []
    out.append("Blocked:\n\n" + (_table(
        ("Pod", "Owner", "Host", "Refused by", "Attempts"),
        [(code(f"{b.get('namespace', '')}/{b.get('pod', '')}"), code(b.get("owner", "")),
          code(b.get("host", "")), str(b.get("refused_by", "")), str(b.get("attempts", "")))
         for b in blocked]) if blocked else "nothing was refused."))
    writers = e.get("writers_blocked") or []
    if writers:
        out.append("### External writers blocked\n\n" + _table(
            ("Pod", "Owner", "Would have written", "Host"),
            [(code(f"{w.get('namespace', '')}/{w.get('pod', '')}"), code(w.get("owner", "")),
              str(w.get("writer", "")), code(w.get("host", ""))) for w in writers]))
    return "\n\n".join(out)


def _manual_steps(r: DrillReport) -> str:
    if not r.manual_steps:
        return "### Manual steps\n\nNone."
    rows = [(round_label(m.round, r.recovery_round), code(m.id), m.description, m.performed_by,
             fmt_seconds(m.duration_s), "yes" if m.automatable else "no")
            for m in r.manual_steps]
    return "### Manual steps\n\n" + _table(
        ("Round", "Step", "Description", "Performed by", "Duration", "Automatable"), rows)


def _settings(settings: Mapping[str, Any]) -> str:
    out: list[str] = []
    versions = settings.get("versions")
    if isinstance(versions, Mapping) and versions:
        out.append("### Versions\n\n" + _table(
            ("Tool", "Version"), [(tool, code(v)) for tool, v in sorted(versions.items())]))
    flux = settings.get("flux", settings.get("flux_flags"))
    if isinstance(flux, Mapping) and flux:
        rows = flux_setting_rows(flux)
        rest = {k: v for k, v in flux.items() if k != "settings"}
        out.append("### Flux settings\n\n" + (_table(
            ("Controller", "Setting", "Where it came from"),
            [(cell(c), code(a), cell(src)) for c, a, src in rows]) + "\n\n" if rows else "")
            + "\n".join(f"- {code(k)}: {code(v) if v else 'n/a'}" for k, v in flatten(rest)))
    changes = settings.get("local_run_changes")
    if isinstance(changes, (list, tuple)) and changes:
        out.append(_bullets("Changed to run locally", [str(c) for c in changes]))
    return "\n\n".join(out)


def _error(error: str | None) -> str:
    if not error:
        return ""
    longest = max((len(m) for m in re.findall(r"`{3,}", error)), default=2)
    fence = "`" * (longest + 1)
    return f"### Error\n\n{fence}text\n{error.rstrip()}\n{fence}"


def _bullets(title: str, items: Sequence[str]) -> str:
    if not items:
        return ""
    return f"### {title}\n\n" + "\n".join(f"- {item}" for item in items)


def _diagnostics(diagnostics: Mapping[str, str]) -> str:
    if not diagnostics:
        return ""

    def link(label: str, path: str) -> str:
        text = label.replace("[", "\\[").replace("]", "\\]")
        target = f"<{path}>" if re.search(r"[\s()<>]", path) else path
        return f"- [{text}]({target})"

    return "### Diagnostics\n\n" + "\n".join(link(k, v) for k, v in sorted(diagnostics.items()))
