"""`drdrill report allure` with the pinned Allure 3 from npm: time-to-ready as performance
metrics with history over three nights, and the RTO quality gate failing the night it is missed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.report.allure import history_id
from harness.report.writers import write_all
from tests.unit.test_report_html_trend import make_report

pytestmark = pytest.mark.integration

NIGHTS = [(70.0, 40.0), (74.0, 41.0), (95.0, 39.0)]
"""(staging TTR, production TTR) per night; staging's RTO is 90 s, production's 60 s."""


def _night(root: Path, night: int) -> Path:
    folder = root / f"night{night}"
    for cluster, ttr, rto in (("clusters/staging", NIGHTS[night][0], 90.0),
                              ("clusters/production", NIGHTS[night][1], 60.0)):
        report = make_report(
            run_id=f"n{night}-{cluster.rsplit('/', 1)[1]}", repo_id="github.com/org/fleet",
            cluster=cluster, started_at=f"2026-12-0{night + 1}T03:00:00Z", time_to_ready_s=ttr,
            rto_target_s=rto, verdict="passed" if ttr <= rto else "failed",
            error=None if ttr <= rto else f"RTOExceeded: {ttr}s is over the RTO of {rto}s")
        write_all(report, folder / report.run_id)
    return folder


def test_three_nights_of_time_to_ready_metrics_with_history_and_an_rto_gate(tmp_path, capsys,
                                                                           monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    history = tmp_path / "history" / "allure-history.jsonl"
    codes = []
    for night in range(3):
        codes.append(main(["report", "allure", str(_night(tmp_path, night)), "--history",
                           str(history), "--out", str(tmp_path / f"report{night}")]))
    assert codes == [0, 0, 1]  # night 3: staging's 95 s is over its 90 s RTO
    assert list((tmp_path / "cwd").iterdir()) == []  # nothing left where it was run
    err = capsys.readouterr().err
    assert "95 s exceeds the allowed maximum 90 s" in err and "clusters/staging" in err
    points = [json.loads(line) for line in history.read_text().splitlines()]
    assert len(points) == 3  # one per night: the gate does not add its own
    staging = make_report(repo_id="github.com/org/fleet", cluster="clusters/staging")
    key = f"drdrill.{history_id(staging)}.time_to_ready"
    assert [p["metrics"][key] for p in points] == [70, 74, 95]
    report = tmp_path / "report2"
    assert (report / "index.html").is_file()
    widget = json.loads((report / "widgets" / "metrics.json").read_text())
    assert sorted(h["metrics"][key] for h in widget["history"]) == [70, 74]  # newest first
    current = {m["key"]: m for m in widget["current"]}
    assert current[key]["value"] == 95 and current[key]["unit"] == "s"
    assert {m["group"] for m in widget["current"]} == {
        history_id(staging),
        history_id(make_report(repo_id="github.com/org/fleet", cluster="clusters/production"))}


def test_no_results_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", "allure", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no allure-results folder" in capsys.readouterr().err
