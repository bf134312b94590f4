"""Allure results for one drill, written without allure-pytest's runtime (the CLI has none).

The drill is one Allure test: one step per phase, and inside each converge step one sub-step per
Flux object. `historyId` depends only on what makes two runs comparable (scenario, provider, repo,
cluster), so Allure's history and trends line runs up. The result and attachment file names derive
from the run id: writing the same run again (the runner writes before and after teardown)
replaces its files instead of adding a second test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import mimetypes
import socket
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attr
from allure_commons.model2 import (
    Attachment,
    Label,
    Parameter,
    Status,
    StatusDetails,
    TestResult,
    TestStepResult,
)

from harness.report.markdown import (
    figure_text,
    flatten,
    flux_setting_rows,
    fmt_seconds,
    manual_text,
    render_markdown,
    rto_text,
)
from harness.report.model import DrillReport, ObjectRecord, PhaseRecord
from harness.report.redact import (
    looks_like_secret_file,
    redact,
    redact_data,
    report_error,
    strip_control,
    write_report_file,
)

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("5b0f2f2e-6f7a-4a55-9d0e-6a1c1d7e2b10")
_STATUS = {"passed": Status.PASSED, "failed": Status.FAILED, "broken": Status.BROKEN,
           "skipped": Status.SKIPPED}

# Allure matches messageRegex against the whole message (Java `matches`), hence `(?s)...*`.
# The names are those of harness.errors' DrillFailure subclasses and the messages they build.
DR_FAILURE_REGEX = (r"(?s).*(RTOExceeded|over the RTO|NotConverged|not converged|ObjectFailed"
                    r"|RolloutFailed|not rolled out).*")
CATEGORIES: list[dict[str, Any]] = [
    {"name": "DR expectation failed", "matchedStatuses": ["failed"],
     "messageRegex": DR_FAILURE_REGEX},
    {"name": "Infrastructure broken", "matchedStatuses": ["broken"]},
]

_MIME = {
    ".md": "text/markdown", ".txt": "text/plain", ".log": "text/plain", ".json": "application/json",
    ".yaml": "application/yaml", ".yml": "application/yaml", ".xml": "application/xml",
    ".html": "text/html", ".csv": "text/csv", ".png": "image/png", ".svg": "image/svg+xml",
}


def history_id(report: DrillReport) -> str:
    """Stable for the same scenario, provider, repo and cluster; the revision may change, and so
    may the checkout's path (a CI workspace): the repo is its `repo_id` (remote or name)."""
    key = "\x1f".join((report.scenario, report.provider, redact(report.repo_id or report.repo),
                       report.cluster))
    return hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()


def group_title(report: DrillReport) -> str:
    return (f"{report.scenario} on {report.provider}, {redact(report.repo_id or report.repo)}"
            + (f" {report.cluster}" if report.cluster else ""))


def metric_key(report: DrillReport, name: str) -> str:
    """`drdrill.<history id>.<name>`: one series per scenario/provider/repo/cluster, so the
    report of a whole fleet keeps each drill's time-to-ready apart (and its RTO gate too)."""
    return f"drdrill.{history_id(report)}.{name}"


def performance_metrics(report: DrillReport) -> list[dict[str, Any]]:
    """Allure 3 performance results (`<uuid>-perf.json`): time-to-ready, each phase of the
    recovery round, manual steps. Seconds, lower is better; none without a start time."""
    start = _epoch_ms(report.started_at)
    if start is None:
        return []
    group = history_id(report)
    title = group_title(report)

    def metric(name: str, label: str, value: float, unit: str, begin: int, seconds: float
               ) -> dict[str, Any]:
        return {"id": str(uuid.uuid5(_NAMESPACE, f"{report.run_id}:{name}")),
                "key": metric_key(report, name), "value": round(value, 3),
                "start": begin, "stop": begin + round(seconds * 1000),
                "title": label, "unit": unit, "better": "lower",
                "group": group, "groupTitle": title}

    out = []
    recovery = report.phases_in_round(report.recovery_round)
    first = _epoch_ms(recovery[0].started_at) if recovery else None
    if report.time_to_ready_s is not None:
        out.append(metric("time_to_ready", "time-to-ready", report.time_to_ready_s, "s",
                          first or start, report.time_to_ready_s))
    for phase in recovery:
        begin = _epoch_ms(phase.started_at) or start + round(phase.offset_s * 1000)
        out.append(metric(f"phase.{phase.name}", f"recovery {phase.name}", phase.duration_s,
                          "s", begin, phase.duration_s))
    out.append(metric("manual_steps", "manual steps", len(report.recovery_manual_steps),
                      "steps", start, 0.0))
    return out


def write_allure_results(report: DrillReport, results_dir: Path, *,
                         attachments: Mapping[str, Path] | None = None) -> Path:
    """Write `<uuid>-result.json`, its attachments, `environment.properties` and
    `categories.json` into `results_dir` (what `allure generate` reads); return `results_dir`.

    `attachments` maps a label to a file; text files are redacted, and anything that looks like
    a kubeconfig or a key is left out. A missing attachment is a warning, not an error.
    """
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise report_error(results_dir, exc, folder=True) from exc
    result_uuid = str(uuid.uuid5(_NAMESPACE, f"drdrill:{report.run_id}"))
    result_path = results_dir / f"{result_uuid}-result.json"
    previous = _attachment_sources(result_path)

    files: list[Attachment] = [_attach_text(results_dir, report.run_id, "report.md",
                                            render_markdown(report), "text/markdown", "md")]
    for label, path in (attachments or {}).items():
        att = _attach_file(results_dir, report.run_id, label, path)
        if att is not None:
            files.append(att)

    result = _test_result(report, result_uuid, files)
    data = redact_data(attr.asdict(result, filter=lambda _, v: v or v is False))
    write_report_file(result_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                      scrub=False)
    for stale in previous - {a.source for a in files}:
        (results_dir / stale).unlink(missing_ok=True)

    metrics = performance_metrics(report)
    if metrics:
        write_report_file(results_dir / f"{result_uuid}-perf.json",
                          json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    write_report_file(results_dir / "environment.properties", environment_properties(report))
    write_report_file(results_dir / "categories.json", json.dumps(CATEGORIES, indent=2) + "\n")
    return results_dir


def environment_properties(report: DrillReport) -> str:
    """Allure's Environment widget: provider, tool versions and Flux settings, one per line."""
    pairs: list[tuple[str, str]] = [("provider", report.provider), ("cluster", report.cluster),
                                    ("repo", report.repo_id or report.repo)]
    versions = report.settings.get("versions")
    if isinstance(versions, Mapping):
        pairs += [(f"version.{tool}", str(v)) for tool, v in sorted(versions.items())]
    flux = report.settings.get("flux", report.settings.get("flux_flags"))
    if isinstance(flux, Mapping):
        pairs += flatten({k: v for k, v in flux.items() if k != "settings"}, "flux.")
        pairs += [(f"flux.setting.{c}.{a.split('=', 1)[0].lstrip('-')}", f"{a} ({src})")
                  for c, a, src in flux_setting_rows(flux)]
    return "".join(f"{_prop(k, key=True)}={_prop(redact(v))}\n" for k, v in pairs)


# -- the test result ------------------------------------------------------------------------

def _test_result(report: DrillReport, result_uuid: str, files: list[Attachment]) -> TestResult:
    start = _epoch_ms(report.started_at)
    steps = _phase_steps(report, start)
    stops = [s.stop for s in steps if s.stop is not None]
    status_details = None
    if report.verdict != "passed":
        status_details = StatusDetails(
            message=strip_control(report.error or f"drill {report.verdict}"))
    fig = figure_text(report)
    repo = redact(report.repo_id or report.repo)
    headline = (f"**{report.verdict.upper()}**{' · ' + fig if fig else ''} · time-to-ready "
                f"{fmt_seconds(report.time_to_ready_s)} · {rto_text(report)} · "
                f"{manual_text(report)} in the recovery")
    return TestResult(
        uuid=result_uuid,
        historyId=history_id(report),
        # One test case per drill of the fleet: a second cluster is another test, not a retry.
        testCaseId=history_id(report),
        fullName=f"drdrill.{report.scenario}[{report.provider}] {repo} {report.cluster}".rstrip(),
        titlePath=["drdrill", report.scenario],
        name=group_title(report),
        description=headline,
        status=_STATUS[report.verdict],
        statusDetails=status_details,
        stage="finished",
        start=start,
        stop=max(stops, default=start),
        steps=steps,
        attachments=files,
        parameters=[
            Parameter(name="provider", value=report.provider),
            Parameter(name="repo", value=report.repo_id or report.repo),
            Parameter(name="revision", value=report.revision),
            Parameter(name="cluster", value=report.cluster),
            Parameter(name="rto", value=fmt_seconds(report.rto_target_s)
                      if report.rto_target_s is not None else "none"),
            *(Parameter(name=f.label, value=fmt_seconds(f.value_s) if f.value_s is not None
                        else "not reached") for f in report.recovery_figures),
        ],
        labels=[
            Label(name="parentSuite", value="drdrill"),
            Label(name="suite", value=report.scenario),
            Label(name="subSuite", value=report.provider),
            Label(name="epic", value="disaster recovery"),
            Label(name="feature", value=report.scenario),
            Label(name="severity", value="critical"),
            Label(name="framework", value="drdrill"),
            Label(name="tag", value=report.provider),
            Label(name="host", value=socket.gethostname()),
            Label(name="thread", value=report.run_id),
        ],
    )


def _phase_steps(report: DrillReport, start: int | None) -> list[TestStepResult]:
    steps: list[TestStepResult] = []
    for phase in report.phases:
        p_start = _epoch_ms(phase.started_at)
        if p_start is None and start is not None:
            p_start = start + round(phase.offset_s * 1000)
        p_stop = None if p_start is None else p_start + round(phase.duration_s * 1000)
        name = phase.name if phase.round == 0 else f"round {phase.round} · {phase.name}"
        sub = (_object_steps(report, phase) if phase.name == "converge" else [])
        steps.append(TestStepResult(
            name=name, status=_STATUS[phase.outcome], stage="finished",
            statusDetails=StatusDetails(message=strip_control(phase.error)) if phase.error
            else None,
            start=p_start, stop=p_stop, steps=sub))
    return steps


def _object_steps(report: DrillReport, converge: PhaseRecord) -> list[TestStepResult]:
    """One sub-step per Flux object of the round; times count from the round's recovery start."""
    in_round = report.phases_in_round(converge.round)
    base_phase = next((p for p in in_round if p.name == "provision"), in_round[0])
    base = _epoch_ms(base_phase.started_at)

    def at(seconds: float | None) -> int | None:
        return None if base is None or seconds is None else base + round(seconds * 1000)

    def order(o: ObjectRecord) -> tuple[bool, float, str]:
        return (o.ready_after_s is None, o.ready_after_s or 0.0, o.ref)

    not_ready_status = (_STATUS[converge.outcome] if converge.outcome != "passed"
                        else Status.UNKNOWN)
    converge_end = converge.offset_s + converge.duration_s - base_phase.offset_s
    steps = []
    for o in sorted(report.objects_in_round(converge.round), key=order):
        what = f"{o.kind} {o.namespace}/{o.name}"
        done = o.ready and o.ready_after_s is not None
        params = [Parameter(name="revision", value=o.revision or "none")]
        if o.depends_on:
            params.append(Parameter(name="depends on", value=", ".join(o.depends_on)))
        if not done and o.reason:
            params.append(Parameter(name="reason", value=o.reason))
        if not done and o.waiting_on:
            params.append(Parameter(name="waiting on", value=o.waiting_on))
        first = o.first_seen_s if o.first_seen_s is not None else 0.0
        steps.append(TestStepResult(
            name=f"{what} ready after {o.ready_after_s:.1f}s" if done else f"{what} not ready",
            status=Status.PASSED if done else not_ready_status, stage="finished",
            statusDetails=None if done or not o.message
            else StatusDetails(message=strip_control(o.message)),
            start=at(first), stop=at(o.ready_after_s if done else converge_end),
            parameters=params))
    return steps


# -- attachments ----------------------------------------------------------------------------

def _attachment_name(results_dir: Path, run_id: str, label: str, ext: str) -> Path:
    att_uuid = uuid.uuid5(_NAMESPACE, f"drdrill:{run_id}:{label}")
    return results_dir / f"{att_uuid}-attachment.{ext}"


def _attach_text(results_dir: Path, run_id: str, label: str, text: str, mime: str,
                 ext: str) -> Attachment:
    target = write_report_file(_attachment_name(results_dir, run_id, label, ext), text)
    return Attachment(name=label, source=target.name, type=mime)


def _attach_file(results_dir: Path, run_id: str, label: str, path: Path) -> Attachment | None:
    if looks_like_secret_file(path.name) or looks_like_secret_file(label):
        log.warning("allure: not attaching %s (%s): it looks like a kubeconfig or a key",
                    label, path)
        return None
    try:
        body = path.read_bytes()
    except OSError as exc:
        log.warning("allure: not attaching %s: cannot read %s: %s", label, path, exc)
        return None
    ext = path.suffix.lstrip(".").lower() or "txt"
    mime = _MIME.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    text = _as_text(body)
    target = _attachment_name(results_dir, run_id, label, ext)
    if text is None:
        write_report_file(target, body)
        return Attachment(name=label, source=target.name, type=mime or "application/octet-stream")
    if looks_like_secret_file(path.name, text):
        log.warning("allure: not attaching %s (%s): it is a kubeconfig", label, path)
        return None
    write_report_file(target, text)
    return Attachment(name=label, source=target.name, type=mime or "text/plain")


def _as_text(body: bytes) -> str | None:
    if b"\x00" in body:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _attachment_sources(result_path: Path) -> set[str]:
    """Attachment files a previous write of this run's result referenced (to remove stale ones)."""
    try:
        data = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    found: set[str] = set()

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            for att in item.get("attachments") or ():
                if isinstance(att, dict) and isinstance(att.get("source"), str):
                    found.add(Path(att["source"]).name)
            for step in item.get("steps") or ():
                walk(step)

    walk(data)
    return found


# -- small helpers --------------------------------------------------------------------------

def _epoch_ms(iso: str) -> int | None:
    try:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return round(when.timestamp() * 1000)


def _prop(text: str, *, key: bool = False) -> str:
    """Java .properties escaping (Allure reads the file with `Properties.load`, ISO-8859-1)."""
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in "=:#!" and (key or i == 0):
            out.append("\\" + ch)
        elif ch == " " and (key or i == 0):
            out.append("\\ ")
        elif ord(ch) > 0x7E:
            out.extend(f"\\u{unit:04x}" for unit in _utf16(ch))
        else:
            out.append(ch)
    return "".join(out)


def _utf16(ch: str) -> Sequence[int]:
    raw = ch.encode("utf-16-be")
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
