"""The drdrill pytest plugin, tested with pytester (no cluster is started).

Every inner session runs in a subprocess: in-process, pytester drops the modules the inner
session imported (harness.* among them) when it ends, and the outer session's later drills in the
same worker then ran with a second copy of them (a YAML loader without its constructors, a
patched open_run): full-rebuild broke in preflight after these tests on the same xdist worker."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.unit
pytest_plugins = ["pytester"]


def test_options_and_fixtures_are_registered(pytester):
    pytester.makepyfile("""
        from pathlib import Path

        def test_opts(drill_options, drill_recorder):
            assert drill_options.provider == "kind"
            assert drill_options.keep_cluster == "on-failure"
            assert drill_options.repo == Path("/some/repo")
            assert drill_options.rto_s == 90.0
            assert drill_recorder.run_id
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--provider", "kind",
                                "--keep-cluster", "on-failure", "--repo", "/some/repo",
                                "--rto", "90")
    result.assert_outcomes(passed=1)


def test_keep_cluster_choices_are_enforced(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("--keep-cluster", "sometimes")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*invalid choice*sometimes*"])


def test_session_report_tree_is_indexed(pytester, tmp_path):
    """Reports of one session share a folder and are indexed in session.json."""
    out = tmp_path / "reports"
    pytester.makepyfile(f"""
        import json
        from harness.pytest_plugin import _session_dir

        def test_writes(pytestconfig):
            folder = _session_dir(pytestconfig)
            assert folder.parent == __import__("pathlib").Path({str(out)!r})
            for rid in ("a", "b"):
                (folder / rid).mkdir(parents=True)
                (folder / rid / "report.json").write_text(json.dumps(
                    {{"run_id": rid, "verdict": "passed", "scenario": "full-rebuild"}}))
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--drill-report-dir", str(out))
    result.assert_outcomes(passed=1)
    [session] = list(out.glob("session-*"))
    index = json.loads((session / "session.json").read_text())
    assert [d["run_id"] for d in index["drills"]] == ["a", "b"]
    assert index["drills"][0]["report"] == "a/report.json"


def test_an_interrupted_drill_ends_the_session_after_its_teardown(pytester):
    """^C in `pytest scenarios/` ends the session with 130 once the current drill's teardown
    and report are done; the next scenario does not start."""
    pytester.makeconftest("""
        from pathlib import Path
        from types import SimpleNamespace

        import pytest

        import harness.drill

        class Interrupted:
            interrupted_by = "SIGINT"
            report_error = None
            report = None
            plan = SimpleNamespace(report_dir=Path("reports/x"))

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                print("teardown done")  # the engine's __exit__: report and teardown
                return True

            def execute(self):
                pass

        # monkeypatch, not an assignment: the inner session runs in this very process, and a
        # drill started later by the outer session must get the real open_run back
        @pytest.fixture(autouse=True)
        def _interrupted(monkeypatch):
            monkeypatch.setattr(harness.drill, "open_run", lambda *a, **k: Interrupted())
    """)
    pytester.makepyfile("""
        def test_first(run_scenario):
            run_scenario("full-rebuild")

        def test_second():
            raise AssertionError("must not run after an interrupt")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    assert result.ret == 130
    result.stdout.fnmatch_lines(["*teardown done*", "*interrupted by SIGINT*"])
    assert "must not run" not in result.stdout.str()
