"""`drdrill bench` in its smallest configuration, end to end on the embedded cluster: a
generated repo of two apps (a Kustomization and a HelmRelease each) with the peers next to
drdrill and Flux alone before it, and 50 Ready transitions for the detection latency. The full
benchmark runs by `nox -s bench`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.gc import run_processes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOP = Path(__file__).resolve().parents[2]


def test_smallest_bench_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DRDRILL_STATE_DIR": str(tmp_path / "state")}
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bench", "--quick", "--sections",
         "scaling,latency", "--sizes", "2", "--profiles", "fast", "--out-dir",
         str(tmp_path / "out"), "--json", str(out)], env=env, capture_output=True, text=True,
        cwd=TOP, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "**Targets**" in res.stdout and "| detection p95 ≤ 100 ms |" in res.stdout
    result = json.loads(out.read_text())
    (row,) = result["scaling"]
    assert row["verdict"] == "passed", row.get("error")
    assert (row["size"], row["profile"], row["depth"], row["helmreleases"]) == (2, "fast", 2, 2)
    assert row["ttr_s"] > 0 and row["harness_rss_mib"] > 0 and row["load"]
    alone = row["flux_alone"]
    assert alone["verdict"] == "passed", alone.get("error")
    assert alone["objects"] == 6 and row["flux_alone_ttr_s"] > 0
    assert row["ttr_over_flux_alone"] == pytest.approx(row["ttr_s"] / row["flux_alone_ttr_s"],
                                                       abs=0.001)
    assert row["objects_early"]["drdrill"] == 0
    peers = row["peers"]
    # The independent watcher saw the GitRepository, three Kustomizations, two HelmReleases...
    assert peers["objects_seen_by_independent_watcher"] == 6
    # ...and drdrill said "converged" only after every one of them was.
    assert peers["drdrill"]["too_early"] == []
    assert peers["kubectl-wait"]["argv"][0][1] == "wait"
    lat = result["latency"]
    assert lat["drdrill"]["n"] == 50 and lat["missing"] == {"independent": 0, "drdrill": 0}
    assert 0 <= lat["drdrill"]["p50"] < 5
    assert lat["kubectl-wait"]["n"] == 50
    assert result["activity"]["start"]["load_avg"]
    for run_id in [row["run_id"], alone["run_id"]]:
        assert run_processes()[0].get(run_id, []) == []
