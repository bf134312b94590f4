"""Pod-level causes named in converge: pulls (image + registry), crash loops (last log line),
unschedulable pods (the scheduler's message); a failed pull under the `mirror` egress policy
ends the drill as broken at once."""

from __future__ import annotations

import pytest

from harness.converge import Converger
from harness.errors import HarnessError, PullRefused
from harness.podcauses import pod_causes

pytestmark = pytest.mark.unit

REV = "main@sha1:" + "a" * 40


def _pod(name, *, phase="Pending", waiting=None, image="ghcr.io/o/app:1", conditions=()):
    statuses = [{"name": "app", "image": image,
                 "state": {"waiting": waiting} if waiting else {"running": {}}}]
    return {"metadata": {"namespace": "web", "name": name, "ownerReferences": [
        {"kind": "ReplicaSet", "name": "app-7d9", "controller": True}]},
            "status": {"phase": phase, "conditions": list(conditions),
                       "containerStatuses": statuses}}


PODS = [
    _pod("pull", waiting={"reason": "ErrImagePull", "message":
                          'failed to pull and unpack image "ghcr.io/o/app:1": '
                          "172.18.0.1:5000/v2/ghcr.io/o/app/manifests/1: not found"}),
    _pod("back", waiting={"reason": "ImagePullBackOff", "message": "Back-off pulling image"},
         image="busybox:1.36"),
    _pod("crash", phase="Running", waiting={"reason": "CrashLoopBackOff",
                                            "message": "back-off 10s restarting"}),
    _pod("unplaced", conditions=[{"type": "PodScheduled", "status": "False",
                                  "reason": "Unschedulable",
                                  "message": "0/2 nodes are available: 2 Insufficient cpu."}]),
    _pod("fine", phase="Running"),
    _pod("starting", waiting={"reason": "ContainerCreating"}),
]


def test_causes_name_image_registry_log_line_and_scheduler_message():
    logs = []

    def last(ns, pod, container):
        logs.append((ns, pod, container))
        return "last log line: panic: no config"

    causes = {c.pod: c for c in pod_causes(PODS, last_log_line=last)}
    assert set(causes) == {"pull", "back", "crash", "unplaced"}
    assert causes["pull"].line() == "web/pull ErrImagePull ghcr.io/o/app:1 (registry ghcr.io)"
    assert "not found" in causes["pull"].detail
    assert causes["back"].registry == "docker.io" and causes["back"].is_pull
    assert causes["crash"].line() == "web/crash CrashLoopBackOff: last log line: panic: no config"
    assert logs == [("web", "crash", "app")]
    assert causes["unplaced"].line() == \
        "web/unplaced Unschedulable: 0/2 nodes are available: 2 Insufficient cpu."
    assert causes["pull"].owner == "ReplicaSet/app-7d9"


def test_a_failed_pull_under_the_mirror_policy_is_broken_at_once():
    c = Converger(api=None, revision=REV, expected=set(), pod_probe=lambda: pod_causes(PODS[:1]),
                  egress_policy="mirror")
    with pytest.raises(PullRefused) as err:
        c.check_pods()
    assert isinstance(err.value, HarnessError)  # broken, not failed
    msg = str(err.value)
    assert "ghcr.io/o/app:1" in msg and "'mirror'" in msg and "web/pull" in msg
    assert "drdrill mirror prefetch" in msg


def test_without_the_mirror_policy_pod_causes_are_shown_not_fatal():
    c = Converger(api=None, revision=REV, expected={"Kustomization/flux-system/apps"},
                  pod_probe=lambda: pod_causes(PODS), egress_policy="open")
    c.check_pods()
    line = c.summary()
    assert "pods: web/pull ErrImagePull ghcr.io/o/app:1 (registry ghcr.io)" in line
    assert "and 1 more" in line  # four causes, three shown


def test_a_failing_probe_does_not_end_the_watch():
    def broken():
        raise OSError("connection reset")

    c = Converger(api=None, revision=REV, expected=set(), pod_probe=broken,
                  egress_policy="mirror")
    c.check_pods()
    assert c.pod_causes == []
