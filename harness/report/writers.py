"""Write a DrillReport to disk in every format: report.json (the contract), report.md, junit.xml,
index.html and allure-results/.

`report.json` is written first so the file other tools read exists whenever possible; a writer
that fails does not stop the others, and their failures are raised together at the end.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import ReportError
from harness.report.allure import write_allure_results
from harness.report.html import write_html
from harness.report.junit import render_junit
from harness.report.markdown import render_summary
from harness.report.model import DrillReport
from harness.report.redact import redact_data, report_error, write_report_file

log = logging.getLogger(__name__)

JSON_NAME = "report.json"
MARKDOWN_NAME = "report.md"
JUNIT_NAME = "junit.xml"
ALLURE_DIR = "allure-results"


def report_data(report: DrillReport) -> dict[str, Any]:
    """`report.to_dict()`, redacted, with `schema_version` first and the fields in model order."""
    data = redact_data(report.to_dict())
    return {"schema_version": data.pop("schema_version"), **data}


def write_json(report: DrillReport, out_dir: Path) -> Path:
    """Write `out_dir/report.json` atomically; ReportError names the file and the fix."""
    text = json.dumps(report_data(report), indent=2, ensure_ascii=False, default=str) + "\n"
    return write_report_file(out_dir / JSON_NAME, text, scrub=False)


def write_markdown(report: DrillReport, out_dir: Path) -> Path:
    return write_report_file(out_dir / MARKDOWN_NAME, render_summary(report))


def write_junit(report: DrillReport, out_dir: Path) -> Path:
    # render_junit redacts each value; a text-level pass could not know XML's escaping.
    return write_report_file(out_dir / JUNIT_NAME, render_junit(report), scrub=False)


def write_all(report: DrillReport, out_dir: Path, *,
              attachments: Mapping[str, Path] | None = None) -> dict[str, Path]:
    """Write every format into `out_dir`; return label (`json`, `markdown`, `junit`, `html`,
    `allure`) -> path.

    Allure gets report.json, the diagnostics files and `attachments` (label -> file) attached.
    Raises one ReportError listing every writer that failed, after all of them were tried.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise report_error(out_dir, exc, folder=True) from exc

    def allure(r: DrillReport, d: Path) -> Path:
        files = {"report.json": d / JSON_NAME}
        files.update({f"diagnostics/{label}": d / rel for label, rel in r.diagnostics.items()})
        files.update(attachments or {})
        return write_allure_results(r, d / ALLURE_DIR, attachments=files)

    writers: list[tuple[str, Callable[[DrillReport, Path], Path]]] = [
        ("json", write_json), ("markdown", write_markdown), ("junit", write_junit),
        ("html", write_html), ("allure", allure),
    ]
    written: dict[str, Path] = {}
    failures: list[tuple[str, Exception]] = []
    for label, writer in writers:
        try:
            written[label] = writer(report, out_dir)
        except Exception as exc:  # one broken writer must not cost the others
            if not isinstance(exc, ReportError):
                log.exception("report writer %s failed", label)
            failures.append((label, exc))
    if failures:
        raise _combined(out_dir, failures, written, total=len(writers))
    return written


def _combined(out_dir: Path, failures: list[tuple[str, Exception]],
              written: Mapping[str, Path], *, total: int) -> ReportError:
    lines = []
    fixes: list[str] = []
    for label, exc in failures:
        text = str(exc).split("\n  fix: ")[0] if isinstance(exc, ReportError) else (
            f"{type(exc).__name__}: {exc}")
        lines.append(f"  {label}: {text}")
        fix = exc.fix if isinstance(exc, ReportError) else None
        if fix and fix not in fixes:
            fixes.append(fix)
    done = ", ".join(f"{k} ({v})" for k, v in written.items()) or "nothing"
    message = (f"{len(failures)} of {total} report writers failed in {out_dir}:\n"
               + "\n".join(lines) + f"\n  written: {done}")
    err = ReportError(message, fix="; ".join(fixes) or "see the errors above; the writers that "
                                                       "failed have a bug or bad input")
    err.written = dict(written)
    return err
