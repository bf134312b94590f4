"""The standalone HTML report, `drdrill report trend` and carrying Allure history."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.report import trend
from harness.report.cli import add_report_commands
from harness.report.html import parse_duration, render_html, short_seconds, ttr_segments
from harness.report.model import (
    CriticalHop,
    DrillReport,
    ManualStep,
    ObjectRecord,
    PhaseRecord,
)
from harness.report.writers import write_all, write_json

pytestmark = pytest.mark.unit

REV = "4f6c2b1e9a0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b"
AGE_KEY = "AGE-SECRET-KEY-1QQPZ7G9R4X5ZLJ8M3VN2K6T0Y8W4S9H7F2D5C3B1A0E9G8J7K6L5M4N3P"
CLIENT_KEY_DATA = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUZha2VrZXk="


def _phases(provision2=12.0, bootstrap2=20.0, converge2=40.0,
            converge2_outcome="passed") -> tuple[PhaseRecord, ...]:
    spec = [("preflight", 1, 0.8, "passed"), ("provision", 1, 14.0, "passed"),
            ("bootstrap", 1, 9.0, "passed"), ("converge", 1, 45.0, "passed"),
            ("verify", 1, 3.0, "passed"), ("disaster", 1, 2.0, "passed"),
            ("provision", 2, provision2, "passed"), ("bootstrap", 2, bootstrap2, "passed"),
            ("converge", 2, converge2, converge2_outcome), ("verify", 2, 5.0, "passed"),
            ("report", 0, 1.0, "passed"), ("teardown", 0, 0.5, "passed")]
    out, t = [], 0.0
    for name, rnd, dur, outcome in spec:
        out.append(PhaseRecord(name=name, started_at=f"2024-05-04T10:00:{int(t) % 60:02d}Z",
                               duration_s=dur, outcome=outcome, round=rnd, offset_s=t,
                               error=None if outcome == "passed" else "not converged"))
        t += dur
    return tuple(out)


def _objects(rnd: int, apps_name: str = "apps") -> tuple[ObjectRecord, ...]:
    def obj(kind, ns, name, first, ready, deps=()):
        return ObjectRecord(kind=kind, namespace=ns, name=name, ready_after_s=ready,
                            revision=f"main@sha1:{REV}", depends_on=deps, round=rnd,
                            first_seen_s=first, ready=True)

    return (obj("GitRepository", "flux-system", "flux-system", 31.0, 33.0),
            obj("Kustomization", "flux-system", "flux-system", 31.1, 35.0),
            obj("Kustomization", "flux-system", "infrastructure", 35.2, 52.0),
            obj("Kustomization", "flux-system", apps_name, 35.3, 72.0,
                ("flux-system/infrastructure",)),
            obj("HelmRelease", "podinfo", "podinfo", 50.0, 61.0))


def make_report(**changes) -> DrillReport:
    report = DrillReport(
        run_id="20240504T100000Z-a1b2c3", scenario="full-rebuild", provider="embedded",
        repo="/srv/git/home-ops", revision=REV, verdict="failed",
        started_at="2024-05-04T10:00:00Z", time_to_ready_s=72.0, rto_target_s=60.0,
        phases=_phases(), objects=_objects(1) + _objects(2),
        manual_steps=(
            ManualStep("import-age-key", "Import the SOPS age key", "operator", 9.0, True, 2),
            ManualStep("deploy-key", "Add the Git deploy key", "drill (simulated)", 1.0,
                       False, 2)),
        critical_path=(
            CriticalHop("GitRepository/flux-system/flux-system", 33.0, 0.0, 2.0),
            CriticalHop("Kustomization/flux-system/flux-system", 35.0, 1.9, 2.0),
            CriticalHop("Kustomization/flux-system/infrastructure", 52.0, 0.0, 16.8),
            CriticalHop("Kustomization/flux-system/apps", 72.0, 16.7, 20.0)),
        settings={"versions": {"kustomize-controller": "v1.4.0", "kube-apiserver": "v1.31.1"},
                  "flux": {"flags": {"kustomize-controller": ["--requeue-dependency=2s"]},
                           "requeue_dependency": "2s", "concurrent": 6},
                  "first_build_ttr_s": 68.0, "local_run_changes": ["url ssh -> http"]},
        diagnostics={"round2/events": "diagnostics/round2/events.txt",
                     "round2/logs/kustomize-controller":
                         "diagnostics/round2/logs/kustomize controller.log"},
        error="RTOExceeded: time-to-ready 72.0s is over the RTO of 60.0s",
        cluster="clusters/dev", notes=("a real recovery needs the deploy key",))
    return dataclasses.replace(report, **changes)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data") and value is not None:
                self.refs.append((tag, name, value))


def _parse(text: str) -> _Refs:
    parser = _Refs()
    parser.feed(text)
    return parser


# -- the HTML report -------------------------------------------------------------------------

def test_write_all_writes_one_self_contained_index_html(tmp_path):
    written = write_all(make_report(), tmp_path)
    assert written["html"] == tmp_path / "index.html"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".html") == ["index.html"]
    text = written["html"].read_text()
    parsed = _parse(text)
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    external = [r for r in parsed.refs if re.match(r"(?i)^\s*(https?:)?//", r[2])]
    assert external == []
    assert not re.search(r"(?i)url\(\s*['\"]?(https?:)?//|@import", text)
    # Diagnostics are linked, relatively, and a space in a path is encoded.
    hrefs = {v for t, n, v in parsed.refs if t == "a" and n == "href"}
    assert hrefs == {"diagnostics/round2/events.txt",
                     "diagnostics/round2/logs/kustomize%20controller.log"}


def test_html_shows_verdict_phases_objects_critical_path_and_manual_steps():
    report = make_report()
    text = render_html(report)
    assert re.search(r'<div class="verdict" id="verdict">FAILED</div>', text)
    assert "12.0s over the RTO" in text and "Over the RTO by 12.0s" in text
    for p in report.phases:
        label = p.name if p.round == 0 else f"round {p.round} · {p.name}"
        assert f">{label}</text>" in text, label
    for o in report.objects_in_round(2):
        assert f"{o.kind} {o.namespace}/{o.name}" in text, o.ref
        assert f"<code>{o.ref.replace('/', '/<wbr>')}</code>" in text  # the table
    marked = re.findall(r'class="critical" data-ref="([^"]+)"', text)
    assert marked == [h.ref for h in report.critical_path]  # ordered by first seen
    assert "HelmRelease/podinfo/podinfo" not in marked
    assert "--requeue-dependency=2s" in text  # the setting that bounds the hops
    assert "up to 2.0s requeue" in text
    for m in report.manual_steps:
        assert f"<code>{m.id}</code>" in text and m.description in text
    assert "10.0s, 14% of time-to-ready" in text
    assert "kustomize-controller" in text and "v1.31.1" in text


def test_html_shows_each_hop_as_its_controller_logged_it():
    report = make_report()
    hops = list(report.critical_path)
    hops[-1] = replace(hops[-1], split={"dependency_checks": 2, "requeue_delay_s": 14.0,
                                        "fetch_build_apply_s": 0.4, "health_check_s": 5.0,
                                        "reconcile_s": 5.4})
    text = render_html(replace(report, critical_path=tuple(hops)))
    assert "As the controller logged it" in text
    assert "requeue delay <b>14.0s</b>; fetch + build + apply <b>0.4s</b>; health checks " \
        "<b>5.0s</b>; whole reconcile <b>5.4s</b>; 2 dependency checks before" in text


def test_html_passed_report_without_rto_or_critical_path():
    text = render_html(make_report(verdict="passed", rto_target_s=None, error=None,
                                   critical_path=(), manual_steps=(), diagnostics={}))
    assert 'id="verdict">PASSED<' in text
    assert "No RTO target was set" in text
    assert 'class="critical"' not in text and "Diagnostics</h2>" not in text


def test_html_not_converged_objects_are_drawn_as_not_ready():
    objects = _objects(1) + tuple(
        dataclasses.replace(o, ready=False, ready_after_s=None, message="dependency not ready")
        if o.name == "apps" else o for o in _objects(2))
    text = render_html(make_report(objects=objects, time_to_ready_s=None,
                                   phases=_phases(converge2_outcome="failed")))
    assert "did not converge" in text
    assert 'fill="url(#notready)"' in text
    assert "not ready</span>: dependency not ready" in text


def test_html_escapes_names_and_redacts_secrets():
    evil = "<script>alert(1)</script>"
    report = make_report(objects=_objects(1) + _objects(2, apps_name=evil),
                         error=f"boom\nSOPS_AGE_KEY={AGE_KEY}\nclient-key-data: {CLIENT_KEY_DATA}",
                         notes=('"><img src=x onerror=alert(1)>',))
    text = render_html(report)
    assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert AGE_KEY not in text and CLIENT_KEY_DATA not in text
    assert "client-key-data: [REDACTED]" in text


def test_ttr_segments_partition_time_to_ready():
    report = make_report()
    segments = ttr_segments(report)
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(72.0)
    for a, b in itertools.pairwise(segments):
        assert a.end == pytest.approx(b.start)
    labels = [s.label for s in segments]
    assert labels[:2] == ["provision", "bootstrap"]
    assert "Kustomization flux-system/apps" in labels
    assert ttr_segments(make_report(time_to_ready_s=None)) == []


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2.0), ("1m30s", 90.0), ("500ms", 0.5),
                                               ("1h", 3600.0), ("fast", None), ("2s junk", None)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("seconds", "text"), [(0, "0"), (0.5, "0.5s"), (1.5, "1.5s"), (45, "45s"),
                                               (120, "2m"), (150, "2m30s"), (3900, "1h05m")])
def test_axis_ticks_keep_half_seconds(seconds, text):
    assert short_seconds(seconds) == text


# -- report.md, for a CI job summary ------------------------------------------------------

def test_report_md_is_short_with_no_relative_links_and_says_what_failed(tmp_path):
    flags = {f"--flag-{i}": "x" * 40 for i in range(60)}  # every controller flag: not in it
    not_ready = tuple(dataclasses.replace(o, ready=False, ready_after_s=None, reason="Failed",
                                          message=f"kustomize build failed {i}")
                      for i, o in enumerate(_objects(2) + _objects(2, "apps-2")[3:4]))
    report = make_report(settings={"flux": {"flags": flags}}, objects=_objects(1) + not_ready,
                         repo_id="github.com/org/home-ops",
                         phases=_phases(converge2_outcome="failed"),
                         leftovers=("process 4242 (etcd)",))
    md = write_all(report, tmp_path)["markdown"].read_text()
    assert len(md.encode()) < 2500, len(md.encode())
    assert not re.search(r"\]\((?!https?://)", md)  # no relative Markdown links
    assert "--flag-1" not in md
    assert "**FAILED**" in md and "`github.com/org/home-ops` `clusters/dev`" in md
    assert "Time-to-ready: **1m 12.0s** (RTO 1m 00.0s, **over by 12.0s**)" in md
    assert "**2** manual steps in the recovery: `import-age-key`, `deploy-key`" in md
    assert "phase `converge` (round 2) failed: not converged" in md
    assert "Failed, kustomize build failed 0" in md and "and 1 more in the full report" in md
    assert "Left behind: process 4242 (etcd)" in md
    assert "RTOExceeded" in md and "`index.html`" in md


# -- trend ----------------------------------------------------------------------------------

def _history(root: Path, ttrs: list[float | None], *, steps: list[int] | None = None) -> Path:
    """One run folder per TTR; folder names sort opposite to time, to prove the ordering."""
    for i, ttr in enumerate(ttrs):
        n = 2 if steps is None else steps[i]
        manual = tuple(ManualStep(f"s{k}", "step", "operator", 1.0, False, 2) for k in range(n))
        report = make_report(run_id=f"run-{i}", started_at=f"2024-05-0{i + 1}T03:00:00Z",
                             time_to_ready_s=ttr, manual_steps=manual,
                             verdict="passed" if ttr is not None else "failed")
        write_json(report, root / f"z{9 - i}")
    return root


def test_trend_three_runs_three_points(tmp_path, capsys):
    history = _history(tmp_path / "reports", [70.0, 72.0, 71.0], steps=[3, 2, 1])
    out = tmp_path / "out"
    assert trend.run_trend(history, out) == 0
    svg = (out / "trend.svg").read_text()
    md = (out / "trend.md").read_text()
    assert svg.startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in svg
    assert svg.count('class="dot"><title>run-') == 3
    assert svg.count('class="stepdot"') == 3
    rows = [line for line in md.splitlines() if line.startswith("| 2024-")]
    assert [r.split(" | ")[1] for r in rows] == ["`run-0`", "`run-1`", "`run-2`"]
    assert [r.split(" | ")[-2] for r in rows] == ["3", "2", "1"]  # manual steps over time
    assert "ok: 1m 11.0s vs median 1m 11.0s of the previous 2 run(s)" in md
    printed = capsys.readouterr().out
    assert "| 2024-05-03 03:00 | `run-2` |" in printed and "trend.svg" in printed


@pytest.mark.parametrize(("previous", "latest", "regression"), [
    ([100.0, 100.0], 130.0, True),    # +30%, +30s: both over
    ([100.0, 100.0], 115.0, False),   # +15%: under the percentage
    ([10.0, 10.0], 14.0, False),      # +40% but only +4s: under the floor
    ([10.0, 10.0], 16.0, True),       # +60%, +6s
    ([100.0, 100.0], 120.0, False),   # exactly +20%: not more than
    ([100.0], 200.0, False),          # one earlier run is not enough to compare
])
def test_regression_needs_both_percentage_and_floor(tmp_path, previous, latest, regression):
    history = _history(tmp_path, [*previous, latest])
    assert trend.run_trend(history, print_out=lambda _: None) == (1 if regression else 0)
    md = (history / "trend.md").read_text()
    assert ("REGRESSION" in md) is regression
    assert ("regression above" in (history / "trend.svg").read_text()) is (len(previous) >= 2)


def test_regression_uses_the_median_of_the_window_and_skips_unconverged_runs(tmp_path):
    points = trend.load_history(_history(tmp_path, [500.0, 60.0, 60.0, None, 62.0, 80.0])).points
    c = trend.check(points, window=3)
    assert [p.ttr_s for p in c.baseline] == [60.0, 60.0, 62.0]
    assert c.median_s == 60.0 and c.limit_s == 72.0 and c.regression
    wide = trend.check(points, window=10)  # the 500 s outlier drags the median up
    assert wide.median_s == 61.0 and wide.regression
    assert not trend.check(points, threshold_pct=50).regression
    failed = trend.check(points, 3)
    assert failed.point.ttr_s is None and not failed.regression
    assert "no time-to-ready" in failed.reason


def test_unreadable_and_foreign_reports_are_skipped_with_a_warning(tmp_path):
    history = _history(tmp_path, [70.0, 72.0, 71.0])
    (history / "broken").mkdir()
    (history / "broken" / "report.json").write_text('{"schema_version": 1, "run_id": ')
    (history / "future").mkdir()
    (history / "future" / "report.json").write_text(json.dumps({"schema_version": 99}))
    (history / "list").mkdir()
    (history / "list" / "report.json").write_text("[1, 2]")
    (history / "binary").mkdir()
    (history / "binary" / "report.json").write_bytes(b"\xff\xfe\x00garbage")
    (history / "bad-time").mkdir()
    data = json.loads((history / "z9" / "report.json").read_text())
    (history / "bad-time" / "report.json").write_text(json.dumps({**data, "started_at": 5}))
    other = make_report(run_id="other", scenario="controller-killed",
                        started_at="2024-04-01T00:00:00Z")
    write_json(other, history / "other")
    warnings: list[str] = []
    assert trend.run_trend(history, warn=warnings.append, print_out=lambda _: None) == 0
    assert len(warnings) == 5
    text = "\n".join(warnings)
    assert "broken/report.json: not JSON" in text
    assert "future/report.json: schema_version 99" in text
    assert "list/report.json: not a drdrill report" in text
    assert "binary/report.json: not UTF-8" in text
    assert "bad-time/report.json: started_at is 5" in text
    md = (history / "trend.md").read_text()
    assert md.count("| 2024-") == 4  # 3 runs of full-rebuild, 1 of controller-killed
    assert "in 2 group(s)" in md and "5 unreadable report(s) skipped" in md


def test_every_group_is_checked_not_only_the_newest(tmp_path):
    """A newer run of another scenario must not hide a full-rebuild regression (the bug)."""
    history = _history(tmp_path, [60.0, 61.0, 150.0])
    newer = make_report(run_id="drift-1", scenario="drift", started_at="2024-06-01T00:00:00Z",
                        time_to_ready_s=20.0)
    write_json(newer, history / "drift-1")
    lines: list[str] = []
    assert trend.run_trend(history, print_out=lines.append) == 1
    md = (history / "trend.md").read_text()
    assert "**1 regression(s)**" in md
    sections = [line for line in md.splitlines() if line.startswith("### ")]
    assert sections[0].startswith("### `full-rebuild`")  # the regression comes first
    assert sections[1].startswith("### `drift`")
    svg = (history / "trend.svg").read_text()
    assert svg.count('<g transform="translate(0,') == 2


def test_a_repo_is_grouped_by_its_remote_not_its_local_path(tmp_path):
    """CI workspaces move; the same remote from two checkouts is one trend line."""
    for i, (path, ttr) in enumerate([("/home/runner/work/a/fleet", 60.0),
                                     ("/builds/x/fleet", 61.0),
                                     ("/tmp/ws-3/checkout", 62.0)]):
        write_json(make_report(run_id=f"r{i}", repo=path, repo_id="github.com/org/fleet",
                               started_at=f"2024-05-0{i + 1}T03:00:00Z", time_to_ready_s=ttr),
                   tmp_path / f"r{i}")
    history = trend.load_history(tmp_path)
    assert list(history.groups()) == [("full-rebuild", "embedded", "github.com/org/fleet",
                                       "clusters/dev")]
    groups = trend.trend_groups(history)
    assert "vs median 1m 00.5s of the previous 2 run(s)" in groups[0].latest.reason
    # Reports written before repo_id existed are keyed by the folder name, not the path.
    assert trend.repo_key({"repo": "/home/runner/work/fleet/fleet/"}) == "fleet"
    assert trend.repo_key({"repo": "/srv/a/fleet", "repo_id": ""}) == "fleet"


def _label_boxes(svg: str) -> list[tuple[float, float, float, float, str]]:
    """(x0, y0, x1, y1, text) of each unrotated text label, from its anchor and length."""
    boxes = []
    for m in re.finditer(r'<text x="([\d.]+)" y="([\d.-]+)" class="[^"]*"'
                         r'(?: text-anchor="(\w+)")?>([^<]*)</text>', svg):
        x, y, anchor, text = float(m[1]), float(m[2]), m[3] or "start", m[4]
        w = len(text) * trend.CHAR_W
        x0 = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
        boxes.append((x0, y - 10, x0 + w, y, text))
    return boxes


@pytest.mark.parametrize("ttrs", [
    [60.0, 60.5, 61.0],
    [3000.0, 100.0, 100.0, 101.0],            # an outlier: median and limit lines 2 px apart
    [float(60 + i % 7) for i in range(30)],   # 30 runs: slots narrower than a label
    [600.0 + i for i in range(12)] + [900.0],  # long labels and a regression box
])
def test_trend_chart_labels_do_not_overlap(tmp_path, ttrs):
    history = _history(tmp_path, ttrs) if len(ttrs) < 10 else _many(tmp_path, ttrs)
    trend.run_trend(history, print_out=lambda _: None)
    boxes = _label_boxes((history / "trend.svg").read_text())
    assert len(boxes) > 5
    for a, b in itertools.combinations(boxes, 2):
        overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
        assert not overlap, f"{a[4]!r} overlaps {b[4]!r}"


def _many(root: Path, ttrs: list[float]) -> Path:
    for i, ttr in enumerate(ttrs):
        report = make_report(run_id=f"run-{i:02d}", time_to_ready_s=ttr,
                             started_at=f"2024-05-{i + 1:02d}T03:00:00Z")
        write_json(report, root / f"r{i:02d}")
    return root


def test_trend_without_history_exits_2(tmp_path):
    lines: list[str] = []
    assert trend.run_trend(tmp_path / "nope", warn=lines.append) == 2
    assert "no history folder" in lines[0]
    (tmp_path / "empty").mkdir()
    assert trend.run_trend(tmp_path / "empty", warn=lines.append) == 2


def test_report_trend_command(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="drdrill")
    add_report_commands(parser.add_subparsers(dest="command", required=True))
    history = _history(tmp_path / "h", [10.0, 10.0, 16.0])
    args = parser.parse_args(["report", "trend", "--history", str(history), "--out",
                              str(tmp_path / "o"), "--threshold", "70", "--window", "2"])
    assert args.func(args) == 0  # +60% is under a 70% threshold
    args = parser.parse_args(["report", "trend", "--history", str(history), "--floor", "7"])
    assert args.func(args) == 0  # +6s is under a 7s floor
    args = parser.parse_args(["report", "trend", "--history", str(history)])
    assert args.func(args) == 1
    assert (tmp_path / "o" / "trend.svg").exists() and (history / "trend.md").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "trend", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "more than --threshold percent AND by more than --floor seconds" in help_text
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "trend", "--window", "0"])


def test_html_cards_of_a_drill_that_stopped_in_round_1_count_round_1():
    """A drill that failed in round 1 applied inputs and ran steps in round 1: its cards say
    so, and that the recovery round never ran (they said 0 / 0, 0, 0 and 'round 2 is the
    recovery'); the objects counted are the objects listed."""
    from harness.report.model import ManualStep

    phases = tuple(p for p in _phases() if p.round != 2)
    objects = tuple(dataclasses.replace(o, ready=o.name != "apps") for o in _objects(1))
    steps = (ManualStep("secret/apps/db", "Provide Secret apps/db", "drdrill (from --inputs)",
                        0.1, True, 1),
             ManualStep("secret/apps/api", "Provide Secret apps/api", "drdrill (from --inputs)",
                        0.1, True, 1))
    auto = (ManualStep("provision-cluster", "Provide a cluster", "drdrill", 9.0, True, 1),
            ManualStep("bootstrap-flux", "Install Flux", "drdrill", 3.0, True, 1))
    text = render_html(make_report(phases=phases, objects=objects, manual_steps=steps,
                                   automated_steps=auto, time_to_ready_s=None))
    tiles = dict(re.findall(r'<div class="k">([^<]*)</div><div class="v[^"]*">([^<]*)</div>',
                            text))
    ready = sum(o.ready for o in objects)
    assert tiles["Flux objects ready (round 1)"] == f"{ready} / {len(objects)}"
    assert tiles["Manual steps (round 1)"] == "2"
    assert tiles["Automated by drdrill (round 1)"] == "2"
    assert "stopped in round 1; round 2 (the recovery) never ran" in text
    assert "round 2 is the recovery" not in text
