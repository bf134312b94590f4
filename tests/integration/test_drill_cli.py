"""`drdrill drill` as a user runs it: end to end, broken repos, Ctrl-C, leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.gc import run_processes

pytestmark = pytest.mark.integration

TOP = Path(__file__).resolve().parents[2]


def drdrill(*args, cache_env=None, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(cache_env or {})}
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, cwd=TOP, **kw)


def leftovers(run_id: str) -> list[int]:
    return run_processes()[0].get(run_id, [])


@pytest.fixture
def state_env(tmp_path):
    """A private state dir per test, so runs are found and checked in isolation."""
    return {"DRDRILL_STATE_DIR": str(tmp_path / "state")}


def test_full_rebuild_of_a_three_level_chain(fixture_repo, tmp_path, state_env):
    repo = fixture_repo("chain3")
    out = tmp_path / "report"
    res = drdrill("drill", "--repo", repo, "--cluster", "clusters/dev", "--report-dir", out,
                  "--rto", "600", cache_env=state_env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "verdict: PASSED" in res.stdout and str(out / "report.json") in res.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 2 and report["verdict"] == "passed"
    phases = [(p["round"], p["name"], p["outcome"]) for p in report["phases"]]
    assert [n for r, n, _ in phases if r in (1, 2)] == [
        "preflight", "provision", "bootstrap", "converge", "verify", "disaster",
        "provision", "bootstrap", "converge", "verify"]
    assert all(o == "passed" for _, _, o in phases)
    sha = report["revision"]
    for rnd in (1, 2):
        ks = {o["name"]: o for o in report["objects"] if o["round"] == rnd
              and o["kind"] == "Kustomization"}
        assert set(ks) == {"flux-system", "crds", "controllers", "apps"}
        assert all(o["revision"] == f"main@sha1:{sha}" for o in ks.values())
        # the chain finishes in dependency order
        assert ks["crds"]["ready_after_s"] <= ks["controllers"]["ready_after_s"] \
            <= ks["apps"]["ready_after_s"]
    assert [h["ref"].rsplit("/", 1)[1] for h in report["critical_path"]][-3:] == [
        "crds", "controllers", "apps"]
    assert 0 < report["time_to_ready_s"] < 600
    # drdrill's own actions are listed apart from what a human must do (none for this repo)
    assert not [m for m in report["manual_steps"] if m["round"] == 2]
    assert {m["id"] for m in report["automated_steps"] if m["round"] == 2} == {
        "provision-cluster", "bootstrap-flux"}
    assert report["recovery_figure"]["name"] == "time_to_rebuild_s"
    assert report["recovery_figure"]["value_s"] == report["time_to_ready_s"]
    assert report["recovery_figure"]["met"] is True  # --rto 600 is its limit
    assert report["recovery_figures"][0]["limit_s"] == 600
    assert not leftovers(report["run_id"])
    assert not (Path(state_env["DRDRILL_STATE_DIR"]) / report["run_id"]).exists()


@pytest.mark.parametrize("fixture", ["broken-missing-path", "broken-cycle",
                                     "broken-invalid-yaml", "broken-unknown-dep"])
def test_broken_repo_is_broken_in_preflight_within_seconds(fixture_repo, tmp_path, fixture,
                                                           state_env):
    out = tmp_path / "report"
    started = time.monotonic()
    res = drdrill("drill", "--repo", fixture_repo(fixture), "--cluster", "clusters/dev",
                  "--report-dir", out, cache_env=state_env, timeout=120)
    assert time.monotonic() - started < 30  # includes interpreter start and tool checks
    assert res.returncode == 2, res.stdout + res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "broken"
    [pre] = [p for p in report["phases"] if p["name"] == "preflight"]
    assert pre["outcome"] == "broken" and "file" in pre["error"] and "object" in pre["error"]
    assert not [p for p in report["phases"] if p["name"] == "provision"]


def test_missing_manual_input_stops_preflight_naming_who_needs_it(sample_repo, tmp_path,
                                                                  state_env):
    out = tmp_path / "report"
    res = drdrill("drill", "--repo", sample_repo, "--report-dir", out, cache_env=state_env,
                  timeout=120)
    assert res.returncode == 2
    report = json.loads((out / "report.json").read_text())
    assert "cluster-secrets" in report["error"]
    assert "Kustomization/flux-system/apps" in report["error"]


def test_bad_options_are_refused_before_anything_starts(tmp_path):
    res = drdrill("drill", "--rto", "soon")
    assert res.returncode == 2 and "not a number" in res.stderr
    res = drdrill("drill", "--scenario", "nope", "--report-dir", tmp_path / "r")
    assert res.returncode == 2 and "invalid choice: 'nope'" in res.stderr
    res = drdrill("drill", "--provider", "nope", "--report-dir", tmp_path / "r2")
    assert res.returncode == 2 and "invalid choice: 'nope'" in res.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


@pytest.mark.parametrize(("phase", "sig"), [("provision", signal.SIGTERM),
                                            ("bootstrap", signal.SIGINT),
                                            ("converge", signal.SIGINT),
                                            ("converge", signal.SIGTERM)])
def test_signal_mid_drill_writes_broken_report_and_leaves_nothing(fixture_repo, tmp_path, phase,
                                                                  sig, state_env):
    repo = fixture_repo("chain3")
    out = tmp_path / "report"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **state_env}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "drill", "--repo", str(repo),
                             "--cluster", "clusters/dev", "--report-dir", str(out)],
                            env=env, cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if f"phase {phase} ..." in line:
            proc.send_signal(sig)
            break
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, "".join(seen) + rest
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "broken"
    hit = [p for p in report["phases"] if p["name"] == phase]
    assert hit and hit[-1]["outcome"] == "broken", report["phases"]
    assert [p["name"] for p in report["phases"]][-1] == "teardown"
    assert not leftovers(report["run_id"])
    assert not (Path(state_env["DRDRILL_STATE_DIR"]) / report["run_id"]).exists()


def test_gc_removes_a_killed_run_but_not_a_live_one(fixture_repo, tmp_path, state_env):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **state_env}
    procs = []
    for name in ("killed", "alive"):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "drill",
             "--repo", str(fixture_repo("home-ops" if name == "alive" else "chain3")),
             "--cluster", "kubernetes/flux/cluster" if name == "alive" else "clusters/dev",
             "--inputs", str(TOP / "tests/data/repos/home-ops/inputs"),
             "--report-dir", str(tmp_path / name)],
            env=env, cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        for p in procs:
            for line in p.stdout:
                if "phase bootstrap ..." in line:
                    break
        procs[0].kill()  # SIGKILL: no teardown runs
        procs[0].communicate(timeout=30)
        state = Path(state_env["DRDRILL_STATE_DIR"])
        runs = {d.name for d in state.iterdir()}
        assert len(runs) == 2
        assert all(run_processes()[0].get(r) for r in runs), "both runs have processes"
        res = drdrill("gc", cache_env=state_env, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "left alone" in res.stdout
        after = run_processes()[0]
        remaining = {d.name for d in state.iterdir()}
        assert len(remaining) == 1, res.stdout
        [live] = remaining
        assert after.get(live), "the live run's processes must survive gc"
        gone = runs - remaining
        assert all(not after.get(r) for r in gone)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            p.communicate(timeout=120)


def test_flux_bootstrap_repo_converges_locally_and_says_what_changed(fixture_repo, tmp_path,
                                                                     state_env):
    out = tmp_path / "report"
    res = drdrill("drill", "--repo", fixture_repo("flux-bootstrap"), "--cluster",
                  "clusters/staging", "--report-dir", out, cache_env=state_env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((out / "report.json").read_text())
    [deploy_key] = [i for i in report["manual_inputs"] if i["replaced_in_drill"]]
    assert (deploy_key["kind"], deploy_key["name"]) == ("Secret", "flux-system")
    assert any(m["id"] == deploy_key["id"] and "real recovery" in m["performed_by"]
               for m in report["manual_steps"] if m["round"] == 2)
    assert any("ssh://" in c for c in report["settings"]["local_run_changes"])
    apps = [o for o in report["objects"] if o["round"] == 2 and o["name"] == "apps"]
    assert apps and apps[0]["ready"]


def test_helm_release_repo_runs_helm_controller_and_converges(fixture_repo, tmp_path,
                                                              state_env):
    repo = fixture_repo("helm-git-chart")
    out = tmp_path / "report"
    res = drdrill("drill", "--repo", repo, "--cluster", "clusters/dev", "--inputs",
                  repo / "inputs", "--report-dir", out, cache_env=state_env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((out / "report.json").read_text())
    assert "helm-controller" in report["settings"]["flux"]["controllers"]
    [hr] = [o for o in report["objects"] if o["round"] == 2 and o["kind"] == "HelmRelease"]
    assert (hr["namespace"], hr["name"], hr["ready"]) == ("web", "hello", True)
    assert any(m["id"] == "secret/web/hello-secrets" for m in report["manual_steps"]
               if m["round"] == 2)
