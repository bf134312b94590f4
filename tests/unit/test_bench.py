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


@pytest.mark.parametrize(("text", "seconds"), [
    ("2s", 2.0), ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert stats.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "2 s", "fast", "1m-3s"])
def test_parse_duration_rejects_what_go_would(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        stats.parse_duration(text)


def test_chain_floor_counts_requeues_per_dependency_and_polls_per_wait() -> None:
    floor = stats.chain_floor(5, requeue="2s", health_poll_s=5.0, wait=True)
    assert (floor.dependency_hops, floor.waited_hops) == (4, 5)
    assert floor.flux_s == 4 * 2 + 5 * 5
    assert stats.chain_floor(1, requeue="30s", health_poll_s=5.0, wait=False).flux_s == 0
    assert stats.chain_floor(3, requeue="30s", health_poll_s=5.0, wait=False).flux_s == 60
    with pytest.raises(ValueError, match="at least one"):
        stats.chain_floor(0, requeue="2s", health_poll_s=5.0, wait=True)


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

@pytest.mark.parametrize(("n", "depth", "chains"), [
    (1, 5, [1]), (10, 5, [1, 2, 3, 4]), (16, 5, [1, 2, 3, 4, 5, 1]), (4, 1, [1, 1, 1, 1])])
def test_chains_cycle_depths_1_to_max(n: int, depth: int, chains: list[int]) -> None:
    plan = genrepo.Plan(n, depth)
    assert plan.chains() == chains
    assert sum(plan.chains()) == n
    assert plan.depth == max(chains)


def test_generated_kustomizations_depend_on_the_hop_before_them() -> None:
    docs = genrepo.kustomizations(genrepo.Plan(6, 3))
    by_name = {d["metadata"]["name"]: d["spec"] for d in docs}  # type: ignore[index]
    assert list(by_name) == ["c000-0", "c001-0", "c001-1", "c002-0", "c002-1", "c002-2"]
    assert "dependsOn" not in by_name["c002-0"]
    assert by_name["c002-2"]["dependsOn"] == [{"name": "c002-1"}]
    assert all(s["wait"] is True and s["path"] == f"./apps/{n}" for n, s in by_name.items())
    hrs = genrepo.helmreleases(genrepo.Plan(10, 5, helmreleases=2))
    assert [h["spec"]["chart"]["spec"]["chart"] for h in hrs] == ["./charts/bench"] * 2
    with pytest.raises(ValueError, match="cannot generate"):
        genrepo.Plan(0).chains()


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
        "scaling": [{"size": 10, "helmreleases": 1, "depth": 4, "verdict": "passed",
                     "ttr_s": 30.0, "floor_s": 28.0, "ttr_over_floor": 30 / 28,
                     "harness_cpu_share_pct": 1.0, "harness_peak_rss_mib": 80.0}],
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
    assert got["TTR ≤ 1.2 x floor at every size"] == ("worst 1.07x", True)
    assert got["500 Kustomizations: CPU < 10 % of a core, RSS < 300 MiB"] == ("not run", None)


def test_targets_say_missed_honestly() -> None:
    result = _result(latency={"drdrill": stats.summary([0.3] * 50),
                              "flux-poll": stats.summary([1.0])})
    peers = result["peers"]
    peers["peers"]["kubectl-wait"]["too_early"] = []  # type: ignore[index]
    peers["harness_cpu_share_pct"] = 3.0  # type: ignore[index]
    result["scaling"] = [{"size": 500, "verdict": "passed", "ttr_over_floor": 1.5,
                          "harness_cpu_share_pct": 12.0, "harness_peak_rss_mib": 350.0}]
    got = {t: ok for t, _, ok in table.targets(result)}
    assert got["detection p95 ≤ 100 ms"] is False
    assert got["detection ≥ 10x faster than the flux CLI's poll (p50)"] is False
    assert got["never later than a correct `kubectl wait`"] is False
    assert got["harness CPU ≤ 2 % of TTR"] is False
    assert got["500 Kustomizations: harness CPU < 10 % of one core"] is False
    assert got["500 Kustomizations: harness RSS < 300 MiB"] is False
    assert got["TTR ≤ 1.2 x floor at every size"] is False
    text = table.render(result)
    assert text.count("**MISSED**") == 7
    result["scaling"] = [{"size": 10, "verdict": "passed", "ttr_over_floor": 1.1},
                         {"size": 500, "verdict": "failed", "ttr_over_floor": None}]
    (floor,) = [(m, ok) for t, m, ok in table.targets(result) if t.startswith("TTR ≤")]
    assert floor == ("worst 1.10x; size 500 did not converge", False)


def test_render_shows_machine_load_and_every_section() -> None:
    text = table.render(_result())
    assert "Test CPU, 2 cores, 24 GiB" in text
    assert "at end 6.0 **(under load)** (gox2)" in text
    assert "| drdrill (watch) | 20.00 s | 0 of 4 | 15 ms / 20 ms / 20 ms (n=2) |" in text
    assert "2 of 4 (apps, x)" in text
    assert "never (a stream)" in text
    assert "drdrill TTR / kubectl-wait TTR: 2.22" in text
    assert "| 10 | 1 | 4 | passed | 30.00 s |" in text
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

    now = {"scaling": [{"size": 50, "ttr_s": 1.0}, {"size": 10, "ttr_s": 2.0}]}
    carry_over(now, {"started_at": "earlier", "scaling": [{"size": 10, "ttr_s": 9.0},
                                                          {"size": 500, "ttr_s": 3.0}]})
    assert [(r["size"], r["ttr_s"]) for r in now["scaling"]] == [(10, 2.0), (50, 1.0),
                                                                 (500, 3.0)]
    assert now["scaling"][2]["measured_in"] == "earlier"
    assert "; earlier run earlier" in table.render({**_result(), "scaling": now["scaling"]})
