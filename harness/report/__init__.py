"""Writers that turn a DrillReport into JSON, Markdown, JUnit and Allure results."""

from __future__ import annotations

from harness.report.allure import write_allure_results
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.writers import write_all, write_json

__all__ = ["render_junit", "render_markdown", "write_all", "write_allure_results", "write_json"]
