"""The benchmark's pure parts: percentiles, the Flux floor, the "ready too early" judgement,
the repo generator's shape, the peers' output parsers, the table and the README section."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from harness.bench import genrepo, judge, stats, table
from harness.bench.cli import _ints, _sections
from harness.bench.peers import exit_of, flux_watch_ready, kubectl_met

pytestmark = pytest.mark.unit

SHA = "0123456789abcdef0123456789abcdef01234567"
REV = f"main@sha1:{SHA}"


# --- stats ----------------------------------------------------------------------------------

def test_percentile_interpolates_like_numpy() -> None:
    values = [0.010, 0.020, 0.030, 0.040, 0.100]
    assert stats.percentile(values, 50) == pytest.approx(0.030)
    assert stats.percentile(values, 95) == pytest.approx(0.088)  # 0.04 + 0.8 * 0.06
    assert stats.percentile(values, 100) == 0.100
    assert stats.percentile([5.0], 95) == 5.0
    assert stats.percentile(list(reversed(values)), 0) == 0.010
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        stats.percentile(values, 101)


def test_summary_of_nothing_says_so() -> None:
    assert stats.summary([]) == {"n": 0, "p50": None, "p95": None, "max": None}
    assert stats.summary([1.0, 3.0])["p50"] == 2.0


def _ks(name: str, *, ready: str = "True", rev: str = REV, gen: int = 1,
        observed: int = 1) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "flux-system", "generation": gen},
            "spec": {}, "status": {"lastAppliedRevision": rev, "observedGeneration": observed,
                                   "conditions": [
                {"type": "Ready", "status": ready, "observedGeneration": observed,
                 "reason": "ReconciliationSucceeded", "message": ""}]}}


def _ev(t: float, name: str, obj: dict[str, object], etype: str = "MODIFIED") -> dict[str, object]:
    return {"t": t, "type": etype, "kind": "Kustomization",
            "ref": f"Kustomization/flux-system/{name}", "object": obj}


def test_ready_times_follow_flux_rule_and_keep_the_first_ready_event() -> None:
    events = [
        _ev(1.0, "a", _ks("a", ready="False"), "ADDED"),
        _ev(2.0, "a", _ks("a", rev="main@sha1:" + "f" * 40)),  # ready at another commit
        _ev(3.0, "a", _ks("a", gen=2, observed=1)),  # ready for an old generation
        _ev(4.0, "a", _ks("a", gen=2, observed=2)),
        _ev(5.0, "a", _ks("a", ready="False", gen=2, observed=2)),  # a later flip: still done
        _ev(1.5, "b", _ks("b", ready="False"), "ADDED"),
        _ev(2.5, "gone", _ks("gone", ready="False"), "ADDED"),
        _ev(2.6, "gone", _ks("gone", ready="False"), "DELETED"),
    ]
    assert judge.ready_times(events, REV) == {"Kustomization/flux-system/a": 4.0,
                                              "Kustomization/flux-system/b": None}


def test_too_early_counts_objects_ready_later_never_or_created_after() -> None:
    ready_at = {"a": 1.0, "b": 5.0, "c": None, "d": 5.3, "e": 5.01}
    assert stats.too_early(ready_at, 5.0) == ["c", "d"]  # e: the same event, seen 10 ms apart
    assert stats.too_early(ready_at, 5.0, tolerance_s=0.0) == ["c", "d", "e"]
    assert stats.too_early(ready_at, 10.0) == ["c"]
    assert stats.too_early({"a": 1.0}, 1.0) == []


def test_speedup_and_ratio() -> None:
    assert stats.speedup(2, 60.0, 40.0) == 3.0
    assert stats.ratio(1.0, 4.0) == 0.25
    assert stats.ratio(None, 4.0) is None and stats.ratio(1.0, 0.0) is None


# --- the repo generator ---------------------------------------------------------------------

def test_levels_follow_the_home_lab_mix_and_add_up() -> None:
    for n in (1, 5, 10, 50, 100, 500, 1000):
        plan = genrepo.Plan(n)
        assert sum(plan.levels()) == n and plan.depth == min(7, n)
        assert plan.flux_objects == 2 * n + 2
    levels = genrepo.Plan(1000).levels()
    assert levels[0] / 1000 == pytest.approx(0.49, abs=0.01)
    assert levels[3] / 1000 == pytest.approx(0.22, abs=0.01)
    assert genrepo.Plan(4, max_depth=1).levels() == [4]
    with pytest.raises(ValueError, match="cannot generate"):
        genrepo.Plan(0).levels()


def test_every_app_is_a_kustomization_with_one_helmrelease_waiting_on_the_spine() -> None:
    plan = genrepo.Plan(12, max_depth=3)
    docs = genrepo.kustomizations(plan)
    by_name = {d["metadata"]["name"]: d["spec"] for d in docs}  # type: ignore[index]
    assert len(by_name) == 12
    assert "dependsOn" not in by_name["d1-0000"]
    assert by_name["d3-0000"]["dependsOn"] == [{"name": "d2-0000"}]
    assert all(s.get("dependsOn", [{"name": "d1-0000"}])[0]["name"].startswith("d")
               for s in by_name.values())
    for name, spec in by_name.items():
        assert spec["wait"] is True and spec["path"] == f"./apps/{name}"
        assert spec["postBuild"]["substituteFrom"] == [{"kind": "ConfigMap",
                                                       "name": genrepo.SETTINGS}]
    hrs = genrepo.helmreleases(plan)
    assert len(hrs) == 12
    assert {h["spec"]["chart"]["spec"]["reconcileStrategy"] for h in hrs} == {"Revision"}


def test_the_written_repo_renders_and_commits(tmp_path: Path) -> None:
    repo = genrepo.write_repo(tmp_path / "r", genrepo.Plan(9))
    assert (repo / genrepo.CLUSTER / "kustomization.yaml").exists()
    assert (repo / "charts" / "bench" / "Chart.yaml").exists()
    assert len(list((repo / "apps").iterdir())) == 9
    assert (repo / ".git").is_dir()


# --- peers' output --------------------------------------------------------------------------

def test_peer_parsers_read_the_stamped_lines() -> None:
    stamps = [
        {"t": 1.0, "start": ["kubectl", "wait"]},
        {"t": 2.0, "line": "kustomization.kustomize.toolkit.fluxcd.io/probe-000 condition met"},
        {"t": 3.0, "line": "kustomization.kustomize.toolkit.fluxcd.io/probe-001 condition met"},
        {"t": 3.5, "exit": 0},
    ]
    assert kubectl_met(stamps) == {"probe-000": 2.0, "probe-001": 3.0}
    assert exit_of(stamps) == (3.5, 0)
    assert exit_of(stamps[:3]) is None  # still running when stopped
    two = [*stamps, {"t": 4.0, "start": ["kubectl", "wait", "helmreleases"]}]
    assert exit_of(two) is None
    assert exit_of([*two, {"t": 4.1, "exit": 1}]) == (4.1, 1)
    watch = [
        {"t": 1.0, "line": "NAMESPACE  \tNAME       \tREVISION        \tSUSPENDED\tREADY\tMESSAGE"},
        {"t": 1.1, "line": "flux-system\tapps\t\tFalse\tFalse\tdependency not ready"},
        {"t": 2.0, "line": f"flux-system\tapps\tmain@sha1:{SHA[:8]}\tFalse\tTrue\tApplied "
                           f"revision: main@sha1:{SHA[:8]}"},
        {"t": 2.5, "line": "flux-system\tother\tmain@sha1:ffffffff\tFalse\tTrue\tApplied"},
        {"t": 3.0, "line": f"flux-system\tapps\tmain@sha1:{SHA[:8]}\tFalse\tTrue\tagain"},
    ]
    assert flux_watch_ready(watch, REV) == {"flux-system/apps": 2.0}


# --- the table ------------------------------------------------------------------------------

def _result(**over: object) -> dict[str, object]:
    activity = {"load_avg": [1.0, 1.0, 1.0], "busy_processes": {}, "other_drdrill_runs": 0}
    result: dict[str, object] = {
        "started_at": "2026-12-01T00:30:00+00:00",
        "machine": {"cpu": "Test CPU", "cores": 2, "memory": "24 GiB", "kernel": "6.1",
                    "python": "3.11"},
        "activity": {"start": activity, "end": {**activity, "load_avg": [6.0, 5.0, 4.0],
                                                "busy_processes": {"go": 2}}},
        "peers": {"verdict": "passed", "ttr_s": 20.0, "harness_cpu_s": 0.3,
                  "harness_cpu_share_pct": 1.5, "harness_peak_rss_mib": 90.0,
                  "cluster_peak_rss_mib": 900.0, "peers": {
                      "objects_seen_by_independent_watcher": 4,
                      "drdrill": {"returned_after_s": 20.0, "too_early": [],
                                  "detection": stats.summary([0.01, 0.02]),
                                  "after_last_ready_s": 0.02},
                      "kubectl-wait": {"returned_after_s": 9.0, "rc": 0,
                                       "too_early": ["Kustomization/flux-system/apps",
                                                     "GitRepository/flux-system/x"],
                                       "detection": stats.summary([0.03])},
                      "flux-watch": {"returned_after_s": None, "too_early": None,
                                     "detection": stats.summary([0.05])}}},
        "latency": {"transitions": 50, "drdrill": stats.summary([0.01] * 50),
                    "flux-poll": stats.summary([1.0] * 5)},
        "scaling": [{"size": 10, "profile": "repo", "requeue_dependency": "30s",
                     "concurrent": 4, "helmreleases": 10, "depth": 7, "verdict": "passed",
                     "ttr_s": 30.0, "flux_alone_ttr_s": 29.0, "ttr_over_flux_alone": 30 / 29,
                     "flux_alone": {"verdict": "passed", "load_avg": [0.5, 0.5, 0.5]},
                     "objects_early": {"drdrill": 0, "kubectl-wait": 3, "flux-poll": 0},
                     "harness_cpu_pct": 1.0, "harness_rss_mib": 80.0, "load": [0.7, 1, 1]}],
        "parallel": [{"drills": 1, "wall_s": 60.0, "speedup": 1.0, "ttr_s": [20.0],
                      "clashes": 0}],
    }
    result.update(over)
    return result


def test_targets_are_judged_from_the_numbers() -> None:
    got = {t: (m, ok) for t, m, ok in table.targets(_result())}
    assert got["detection p95 ≤ 100 ms"] == ("10 ms", True)
    assert got["detection ≥ 10x faster than the flux CLI's poll (p50)"] == ("100x", True)
    # kubectl returned first but with two objects not ready: drdrill is not "later".
    assert got["never later than a correct `kubectl wait`"][1] is True
    assert "kubectl's answer was wrong" in got["never later than a correct `kubectl wait`"][0]
    assert got['never "ready" before every object is'] == ("0 objects early", True)
    assert got["harness CPU ≤ 2 % of TTR"] == ("1.50 %", True)
    assert got["TTR ≤ 1.05 x Flux alone at every size"] == ("worst 1.03x", True)
    assert got["500 Kustomizations: harness CPU, RSS, last Ready → converged"] == \
        ("not run", None)
    assert got["500 Kustomizations converge with Flux's defaults"] == ("not run", None)
    assert got["drdrill never ready early (independent judge), every row"] == \
        ("drdrill 0, kubectl-wait 3, flux-poll 0", True)


def test_targets_say_missed_honestly() -> None:
    result = _result(latency={"drdrill": stats.summary([0.3] * 50),
                              "flux-poll": stats.summary([1.0])})
    peers = result["peers"]
    peers["peers"]["kubectl-wait"]["too_early"] = []  # type: ignore[index]
    peers["harness_cpu_share_pct"] = 3.0  # type: ignore[index]
    result["scaling"] = [{"size": 500, "profile": "repo", "verdict": "passed",
                          "ttr_over_flux_alone": 1.5, "flux_alone_ttr_s": 100.0,
                          "objects_early": {"drdrill": 1},
                          "peers": {"drdrill": {"after_last_ready_s": 0.3}},
                          "harness_cpu_pct": 12.0, "harness_rss_mib": 350.0}]
    got = {t: ok for t, _, ok in table.targets(result)}
    assert got["detection p95 ≤ 100 ms"] is False
    assert got["detection ≥ 10x faster than the flux CLI's poll (p50)"] is False
    assert got["never later than a correct `kubectl wait`"] is False
    assert got["harness CPU ≤ 2 % of TTR"] is False
    assert got["500 Kustomizations (repo): harness CPU < 2 % of a core"] is False
    assert got["500 Kustomizations (repo): harness RSS < 300 MiB"] is False
    assert got["500 Kustomizations (repo): last Ready event → converged < 100 ms"] is False
    assert got["500 Kustomizations converge with Flux's defaults"] is True
    assert got["drdrill never ready early (independent judge), every row"] is False
    assert got["TTR ≤ 1.05 x Flux alone at every size"] is False
    text = table.render(result)
    assert text.count("**MISSED**") == 9
    result["scaling"] = [{"size": 10, "profile": "fast", "verdict": "passed",
                          "ttr_over_flux_alone": 1.01, "flux_alone_ttr_s": 9.0},
                         {"size": 500, "profile": "repo", "verdict": "failed",
                          "ttr_over_flux_alone": None, "flux_alone_ttr_s": 300.0}]
    (ratio,) = [(m, ok) for t, m, ok in table.targets(result) if t.startswith("TTR ≤")]
    assert ratio == ("worst 1.01x; no ratio for 500/repo", False)


def test_render_shows_machine_load_and_every_section() -> None:
    text = table.render(_result())
    assert "Test CPU, 2 cores, 24 GiB" in text
    assert "at end 6.0 **(under load)** (gox2)" in text
    assert "| drdrill (watch) | 20.00 s | 0 of 4 | 15 ms / 20 ms / 20 ms (n=2) |" in text
    assert "2 of 4 (apps, x)" in text
    assert "never (a stream)" in text
    assert "drdrill TTR / kubectl-wait TTR: 2.22" in text
    assert "| 10 | repo (30s, 4) | 10 | 7 | passed | 30.00 s | - | 29.00 s | 1.03x | " \
        "0 / 3 / 0 | 1.00 % | 80 MiB | - | 0.5; 0.7 |" in text
    assert "**Targets**" in text and "| 1 | 60.00 s | 1.00x | 20.00 s | 0 |" in text
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.endswith("|")


def test_update_readme_replaces_only_the_bench_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Benchmark\n\nHow to run it.\n\n## Next\n\nkept\n")
    table.update_readme(readme, "| a |\n")
    first = readme.read_text()
    assert first.index("How to run it.") < first.index(table.BEGIN) < first.index("## Next")
    table.update_readme(readme, "| b |\n")
    text = readme.read_text()
    assert "| a |" not in text and text.count(table.BEGIN) == 1 and "| b |" in text
    assert text.endswith("## Next\n\nkept\n")
    (tmp_path / "bare.md").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no '## Benchmark' section"):
        table.update_readme(tmp_path / "bare.md", "x")


# --- options --------------------------------------------------------------------------------

def test_cli_lists_are_checked_with_the_fix_in_the_message() -> None:
    assert _ints("10,50, 200") == (10, 50, 200)
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated list of numbers"):
        _ints("10,lots")
    with pytest.raises(argparse.ArgumentTypeError, match="1 or more"):
        _ints("0")
    assert _sections("latency,peers") == ("latency", "peers")
    with pytest.raises(argparse.ArgumentTypeError, match="choose from peers,"):
        _sections("latency,speed")


def test_result_is_json_serialisable() -> None:
    json.dumps(_result())


def test_carry_over_adds_only_missing_sizes_marked_with_their_run() -> None:
    from harness.bench.cli import carry_over

    now = {"scaling": [{"size": 50, "ttr_s": 1.0}, {"size": 10, "ttr_s": 2.0}]}  # no profile
    carry_over(now, {"started_at": "earlier", "scaling": [{"size": 10, "ttr_s": 9.0},
                                                          {"size": 500, "ttr_s": 3.0}]})
    assert [(r["size"], r["ttr_s"]) for r in now["scaling"]] == [(10, 2.0), (50, 1.0),
                                                                 (500, 3.0)]
    assert now["scaling"][2]["measured_in"] == "earlier"
    assert "; earlier run earlier" in table.render({**_result(), "scaling": now["scaling"]})


# --- Flux alone -----------------------------------------------------------------------------

def test_flux_alone_syncs_as_flux_bootstrap_would() -> None:
    import yaml

    from harness.bench.alone import sync_manifest
    from harness.flux import FluxSettings

    git, root = yaml.safe_load_all(sync_manifest("http://127.0.0.1:1/r.git", "main",
                                                 "clusters/bench", FluxSettings()))
    assert (git["kind"], git["spec"]["ref"], git["spec"]["interval"]) == \
        ("GitRepository", {"branch": "main"}, "1m")
    assert root["spec"]["path"] == "./clusters/bench" and root["spec"]["prune"] is True
    assert root["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}


def test_flux_alone_reads_the_event_log_as_it_grows(tmp_path: Path) -> None:
    from harness.bench.alone import EventLog

    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    assert log.read() == []
    path.write_text('{"t": 1}\n{"t": 2', encoding="utf-8")  # the watcher mid-line
    assert [e["t"] for e in log.read()] == [1]
    with path.open("a", encoding="utf-8") as fh:
        fh.write('}\n{"t": 3}\n')
    assert [e["t"] for e in log.read()] == [1, 2, 3]


# --- added sections -------------------------------------------------------------------------

def test_a_registered_section_is_measured_rendered_and_selectable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.bench import run, sections

    monkeypatch.setattr(sections, "REGISTERED", {})
    monkeypatch.setattr(run, "REGISTERED", sections.REGISTERED)
    monkeypatch.setattr(table, "REGISTERED", sections.REGISTERED)
    sections.register_section("mirror", measure=lambda opts, say: {"cold_s": 9.5},
                              render=lambda res, cores: [f"mirror cold {res['cold_s']} s", ""])
    with pytest.raises(ValueError, match="exists already"):
        sections.register_section("scaling", measure=lambda o, s: 0, render=lambda r, c: [])
    assert _sections("scaling,mirror") == ("scaling", "mirror")
    opts = run.BenchOptions(repo=tmp_path, inputs=None, out_dir=tmp_path / "out",
                            sections=("mirror",))
    result = run.run_bench(opts, lambda line: None)
    assert result["mirror"] == {"cold_s": 9.5} and "scaling" not in result
    assert "mirror cold 9.5 s" in table.render(result)


def test_a_stopped_500_row_measures_no_cost_and_flux_alone_says_how_far_it_got() -> None:
    row = {"size": 500, "profile": "repo", "verdict": "broken", "harness_rss_mib": 85.0,
           "flux_alone": {"verdict": "timeout", "expect": 4,
                          "ready_at_s": {"a": 1.0, "b": 2.0, "c": 3.0, "d": None}}}
    got = {t: (m, ok) for t, m, ok in table.targets({"scaling": [row]})}
    assert got["500 Kustomizations (repo): harness CPU, RSS, last Ready → converged"] == \
        ("not measured (drill broken)", None)
    assert "| timeout (3 of 4 ready) |" in "\n".join(table.scaling_section([row], 2))
