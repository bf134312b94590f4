"""`drdrill report merge`: many repos, clusters and providers on one fleet page, worst first."""

from __future__ import annotations

import argparse
import dataclasses
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.report import fleet
from harness.report.cli import add_report_commands
from harness.report.writers import write_all, write_json
from tests.unit.test_report_html_trend import make_report

pytestmark = pytest.mark.unit


def _cell(root: Path, repo: str, cluster: str, provider: str, ttrs: list[float | None], *,
          rto: float | None = 120.0, full: bool = False, scenario: str = "full-rebuild",
          day0: int = 1) -> None:
    """One CI cell's reports: a run per TTR, a day apart."""
    for i, ttr in enumerate(ttrs):
        name = f"{repo.rsplit('/', 1)[-1]}-{cluster.rsplit('/', 1)[-1]}"
        report = make_report(
            run_id=f"{name}-{provider}-{day0 + i}",
            repo=f"/home/runner/work/x{i}/checkout", repo_id=repo, cluster=cluster,
            provider=provider, scenario=scenario, started_at=f"2026-11-{day0 + i:02d}T03:00:00Z",
            time_to_ready_s=ttr, rto_target_s=rto,
            verdict="passed" if ttr is not None and (rto is None or ttr <= rto) else "failed",
            error=None if ttr is not None else "not converged: Kustomization/flux-system/apps")
        folder = root / report.run_id
        if full and i == len(ttrs) - 1:
            write_all(report, folder)
        else:
            write_json(report, folder)


def _fleet(tmp_path: Path) -> tuple[list[Path], Path]:
    a, b, history = tmp_path / "cell-a", tmp_path / "cell-b", tmp_path / "history"
    _cell(history, "github.com/org/fleet", "clusters/staging", "embedded", [60, 61, 62, 60])
    _cell(a, "github.com/org/fleet", "clusters/staging", "embedded", [150], day0=5, full=True)
    _cell(history, "github.com/org/fleet", "clusters/production", "kind", [90, 95, 92])
    _cell(a, "github.com/org/fleet", "clusters/production", "kind", [None], day0=4, full=True)
    _cell(b, "gitlab.com/lab/home-ops", "kubernetes/main", "embedded", [100, 110, 118],
          full=True)
    _cell(b, "gitlab.com/lab/home-ops", "kubernetes/utility", "embedded", [30, 31, 30],
          rto=None)
    # The history also holds the cells' runs: a run read twice counts once.
    _cell(history, "gitlab.com/lab/home-ops", "kubernetes/utility", "embedded", [30, 31, 30],
          rto=None)
    return [a, b, history], tmp_path / "out"


def test_merge_writes_one_page_worst_first_and_exits_1_on_a_regression(tmp_path):
    dirs, out = _fleet(tmp_path)
    printed: list[str] = []
    assert fleet.run_merge(dirs, out, print_out=printed.append) == 1
    data = json.loads((out / "fleet.json").read_text())
    order = [(r["repo"], r["cluster"], r["status"]) for r in data["rows"]]
    assert order == [
        ("github.com/org/fleet", "clusters/production", "failed"),
        ("github.com/org/fleet", "clusters/staging", "failed"),  # over the RTO, a regression
        ("gitlab.com/lab/home-ops", "kubernetes/main", "passed"),  # 2s to spare of 120s
        ("gitlab.com/lab/home-ops", "kubernetes/utility", "passed"),
    ]
    staging = data["rows"][1]
    assert staging["regression"] and "REGRESSION" in staging["regression_rule"]
    assert [t["time_to_ready_s"] for t in staging["trend"]] == [60, 61, 62, 60, 150]
    assert data["regressions"] == 1 and data["runs"] == 15
    assert data["rows"][3]["runs"] == 3  # the utility cluster's runs were read twice
    assert staging["latest"]["rto_margin_s"] == -30.0
    assert staging["latest"]["report"] == "../cell-a/fleet-staging-embedded-5/index.html"
    assert data["rows"][2]["latest"]["report"] == "../cell-b/home-ops-main-embedded-3/index.html"
    md = (out / "fleet.md").read_text()
    assert "| ❌ failed | `github.com/org/fleet` | `clusters/production` | kind |" in md
    assert "not converged: Kustomization/flux-system/apps" in md
    assert "+148% vs median" in md  # 150 s against the median 61 s
    assert "2m 30.0s / RTO 2m 00.0s (over by 30.0s)" in md
    assert "](" not in md  # nothing a job summary could not follow
    assert any("wrote" in line and "fleet.html" in line for line in printed)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.spark = 0
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.links.append(a.get("href") or "")
        if tag == "svg" and a.get("class") == "spark":
            self.spark += 1
        if tag == "tr" and a.get("class") != "why":
            self._row = []

    def handle_data(self, data):
        if self._row is not None and data.strip():
            self._row.append(data.strip())

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None


def test_fleet_html_links_each_latest_report_and_draws_a_trend_per_row(tmp_path):
    dirs, out = _fleet(tmp_path)
    fleet.run_merge(dirs, out, print_out=lambda _: None)
    page = _Page()
    page.feed((out / "fleet.html").read_text())
    assert page.spark == 4
    assert all((out / link).resolve().is_file() for link in page.links)
    assert len(page.links) == 3  # the utility cluster's runs have no index.html
    body = [r for r in page.rows if r and r[0] in ("failed", "over-rto", "passed")]
    assert [r[0] for r in body] == ["failed", "failed", "passed", "passed"]
    html = (out / "fleet.html").read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")


def test_merge_with_nothing_to_read_exits_2_and_the_command_passes_the_rule(tmp_path):
    lines: list[str] = []
    assert fleet.run_merge([tmp_path / "nope"], tmp_path / "o", warn=lines.append) == 2
    assert "no folder" in lines[0]
    parser = argparse.ArgumentParser(prog="drdrill")
    add_report_commands(parser.add_subparsers(dest="command", required=True))
    dirs, out = _fleet(tmp_path)
    args = parser.parse_args(["report", "merge", *map(str, dirs), "--out", str(out),
                              "--threshold", "200"])
    assert args.func(args) == 0  # +148% is under a 200% threshold
    args = parser.parse_args(["report", "merge", *map(str, dirs), "--out", str(out)])
    assert args.func(args) == 1


def test_spark_text_marks_runs_without_time_to_ready():
    assert fleet.spark_text([10.0, None, 20.0, 15.0]) == "▁·█▅"
    assert fleet.spark_text([None]) == "·"


def test_a_passed_group_with_less_headroom_sorts_first(tmp_path):
    dirs, out = _fleet(tmp_path)
    data = fleet.load_fleet(dirs, out)
    passed = [r for r in data.rows if r.status == "passed"]
    assert passed[0].rto_margin_s == 2.0 and passed[1].rto_margin_s is None
    assert dataclasses.is_dataclass(passed[0])
