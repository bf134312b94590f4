"""Critical-path hops split from kustomize-controller's JSON log lines (the documented shape:
`ts`, `msg`, the object under its kind, `reconcileID`)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from harness.flux import hops

T0 = dt.datetime(2026, 12, 6, 4, 0, 0, tzinfo=dt.UTC).timestamp()


def line(t: float, msg: str, name: str = "apps", rid: str = "r2", **extra: object) -> str:
    ts = dt.datetime.fromtimestamp(T0 + t, dt.UTC).isoformat(timespec="milliseconds")
    return json.dumps({"level": "info", "ts": ts.replace("+00:00", "Z"), "msg": msg,
                       "controller": "kustomization", "controllerKind": "Kustomization",
                       "Kustomization": {"name": name, "namespace": "flux-system"},
                       "namespace": "flux-system", "name": name, "reconcileID": rid, **extra})


@pytest.mark.parametrize(("text", "seconds"), [
    ("498.659581ms", 0.498659581), ("1m30.5s", 90.5), ("850µs", 0.00085), ("2s", 2.0),
    ("1h0m0s", 3600.0)])
def test_go_durations(text: str, seconds: float) -> None:
    assert hops.go_duration(text) == pytest.approx(seconds)


def test_go_durations_reject_what_is_not_one() -> None:
    assert hops.go_duration("fast") is None and hops.go_duration("2 s") is None


def test_a_hop_that_waited_splits_into_requeue_apply_and_health() -> None:
    log = [
        "not json",
        line(1.0, "Dependencies do not meet ready condition, retrying in 30s", rid="r1"),
        line(31.0, "Dependencies do not meet ready condition, retrying in 30s", rid="r1b"),
        line(61.2, "All dependencies are ready, proceeding with reconciliation"),
        line(61.5, "server-side apply completed", output={"ConfigMap/default/x": "created"}),
        line(66.5, "Reconciliation finished in 5.3s, next run in 10m0s"),
        line(66.6, "Reconciliation finished in 1ms, next run in 10m0s", name="other"),
    ]
    parsed = hops.parse(log)
    assert len(parsed) == 6 and parsed[0].ref == "Kustomization/flux-system/apps"
    got = hops.split(parsed, "Kustomization/flux-system/apps", not_before=T0,
                     dependency_ready=T0 + 40.0)
    assert got is not None
    assert got.dependency_checks == 2
    assert got.reconcile_s == 5.3
    assert got.requeue_delay_s == pytest.approx(61.2 - 40.0, abs=0.002)
    assert got.fetch_build_apply_s == pytest.approx(0.3, abs=0.002)
    assert got.health_check_s == pytest.approx(5.0, abs=0.002)


def test_lines_before_the_round_and_unfinished_reconciles_do_not_count() -> None:
    log = hops.parse([line(-50.0, "Reconciliation finished in 1s, next run in 10m0s", rid="old"),
                      line(2.0, "server-side apply completed")])
    assert hops.split(log, "Kustomization/flux-system/apps", not_before=T0,
                      dependency_ready=None) is None


def test_a_reconcile_without_changes_has_no_apply_line_to_split_at() -> None:
    log = hops.parse([line(3.0, "Reconciliation finished in 250ms, next run in 10m0s")])
    got = hops.split(log, "Kustomization/flux-system/apps", not_before=T0, dependency_ready=None)
    assert got is not None and got.requeue_delay_s is None
    assert got.fetch_build_apply_s is None and got.reconcile_s == 0.25
