"""JUnit XML with one test case per phase, so CI systems show where a drill failed and how long
each phase took."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from harness.report.model import DrillReport, PhaseRecord
from harness.report.redact import redact, strip_control

# XML 1.0 cannot carry most control characters (colour codes in logs are the usual culprit);
# ElementTree would write them and produce a file no parser accepts.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def render_junit(report: DrillReport) -> str:
    """One `<testsuite name="drdrill.<scenario>">` in a `<testsuites>` root; secrets redacted."""
    phases = report.phases
    counts = {o: sum(p.outcome == o for p in phases) for o in ("failed", "broken", "skipped")}
    total = f"{sum(p.duration_s for p in phases):.3f}"
    root = ET.Element("testsuites", {
        "name": "drdrill", "tests": str(len(phases)), "failures": str(counts["failed"]),
        "errors": str(counts["broken"]), "skipped": str(counts["skipped"]), "time": total})
    suite = ET.SubElement(root, "testsuite", {
        "name": f"drdrill.{_text(report.scenario)}", "tests": str(len(phases)),
        "failures": str(counts["failed"]), "errors": str(counts["broken"]),
        "skipped": str(counts["skipped"]), "time": total, "timestamp": report.started_at,
        "id": _text(report.run_id)})
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("run_id", report.run_id), ("provider", report.provider), ("repo", report.repo),
        ("revision", report.revision), ("verdict", report.verdict),
        ("time_to_ready_s", _num(report.time_to_ready_s)),
        ("rto_target_s", _num(report.rto_target_s)),
        ("manual_steps", str(len(report.recovery_manual_steps))),
        ("automated_by_drdrill", str(sum(a.round == report.recovery_round
                                         for a in report.automated_steps))),
        *((f"recovery.{f.name}", _num(f.value_s)) for f in report.recovery_figures),
    ):
        ET.SubElement(props, "property", {"name": name, "value": _text(value)})
    for phase in phases:
        _testcase(suite, report.scenario, phase)
    if report.error:
        ET.SubElement(suite, "system-err").text = _text(report.error)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _testcase(suite: ET.Element, scenario: str, phase: PhaseRecord) -> None:
    case = ET.SubElement(suite, "testcase", {
        "classname": _text(f"{scenario}.round{phase.round}"), "name": _text(phase.name),
        "time": f"{phase.duration_s:.3f}", "timestamp": phase.started_at})
    if phase.outcome in ("failed", "broken"):
        message = phase.error or f"phase {phase.name} {phase.outcome}"
        first = message.strip().splitlines()[0] if message.strip() else message
        tag = "failure" if phase.outcome == "failed" else "error"
        kind = "DrillFailure" if phase.outcome == "failed" else "HarnessError"
        ET.SubElement(case, tag, {"message": _text(first), "type": kind}).text = _text(message)
    elif phase.outcome == "skipped":
        attrs = {"message": _text(phase.error)} if phase.error else {}
        ET.SubElement(case, "skipped", attrs)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _text(value: str) -> str:
    return redact(_NOT_XML.sub("", strip_control(value)))
