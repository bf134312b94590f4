"""The profile sampler's arithmetic: Prometheus text in, per-component figures out."""

from __future__ import annotations

from harness.bench import metrics, table

FIRST = """# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
process_cpu_seconds_total 10.5
workqueue_depth{name="kustomization"} 3
controller_runtime_reconcile_time_seconds_sum{controller="kustomization"} 1.0
controller_runtime_reconcile_time_seconds_count{controller="kustomization"} 10
workqueue_queue_duration_seconds_sum{name="kustomization"} 0.5
workqueue_queue_duration_seconds_count{name="kustomization"} 10
rest_client_rate_limiter_duration_seconds_sum{verb="GET",host="x"} 0.1
rest_client_rate_limiter_duration_seconds_sum{verb="PATCH",host="x"} 0.2
rest_client_requests_total{code="200",method="GET"} 100
something_else 1
"""
# The same series a window later: only the values move.
LAST = "\n".join(line.rsplit(" ", 1)[0] + " " + value for line, value in zip(
    [x for x in FIRST.splitlines() if x and not x.startswith(("#", "something"))],
    ["22.5", "1", "31.0", "110", "100.5", "110", "4.1", "2.2", "600"], strict=True))
MIDDLE = 'workqueue_depth{name="kustomization"} 250\n'


def test_parse_keeps_the_named_metrics_summed_per_label() -> None:
    got = metrics.parse(FIRST)
    assert got[("process_cpu_seconds_total", "")] == 10.5
    assert got[("workqueue_depth", "kustomization")] == 3
    assert got[("rest_client_rate_limiter_duration_seconds_sum", "")] == 0.1 + 0.2
    assert ("something_else", "") not in got


def test_summary_gives_window_deltas_and_gauge_peaks() -> None:
    first, last = metrics.parse(FIRST), metrics.parse(LAST)
    peak = {("workqueue_depth", "kustomization"): max(
        v for text in (FIRST, MIDDLE, LAST) for k, v in metrics.parse(text).items()
        if k == ("workqueue_depth", "kustomization"))}
    got = metrics.summarize({"kustomize-controller": first}, {"kustomize-controller": last},
                            {"kustomize-controller": peak})["kustomize-controller"]
    assert got["cpu_s"] == 12.0
    assert got["workqueue_depth_max"] == {"kustomization": 250}
    assert got["reconciles"] == {"kustomization": 100}
    assert got["reconcile_mean_s"] == {"kustomization": 0.3}
    assert got["queue_wait_mean_s"] == {"kustomization": 1.0}
    assert got["client_throttle_s"] == 6.0 and got["client_requests"] == 500


def test_the_table_shows_each_profiled_component() -> None:
    row = {"size": 500, "profile": "repo", "perf": {"metrics": {
        "kustomize-controller": {"cpu_s": 12.0, "workqueue_depth_max": {"kustomization": 250},
                                 "client_throttle_s": 6.0, "client_requests": 500}}}}
    text = "\n".join(table.profile_section([row]))
    assert "kustomize-controller | 12.00 s | queue max kustomization 250" in text
    assert "client-side throttling 6.0 s over 500 requests" in text


def test_the_hops_table_puts_drdrill_and_flux_alone_side_by_side() -> None:
    split = {"requeue_delay_s": 28.0, "fetch_build_apply_s": 0.4, "health_check_s": 5.0}
    row = {"size": 10, "profile": "repo",
           "critical_path": [{"ref": "GitRepository/flux-system/flux-system",
                              "ready_after_s": 3.0},
                             {"ref": "Kustomization/flux-system/d2-0000", "ready_after_s": 40.0,
                              "split": split}],
           "flux_alone": {"hops": {"Kustomization/flux-system/d2-0000": {
               **split, "requeue_delay_s": 27.0}}}}
    text = "\n".join(table.hops_section([row]))
    assert "| 10 repo | d2-0000 | 40.00 s | 28.00 s / 0.40 s / 5.00 s | " \
        "27.00 s / 0.40 s / 5.00 s |" in text
    assert "| flux-system |" not in text  # only Kustomizations have a kustomize-controller log
