"""The independent judge, on cases taken from Flux's docs: the kustomize-controller
Kustomization spec (status section and its `kubectl describe` examples), the kstatus rules the
Kustomization API says it follows, source-controller's GitRepository revision formats, and
helm-controller's release history (charts from Git with reconcileStrategy: Revision)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.bench import judge

# The commits named in the docs' examples.
DOC_COMMIT = "450796ddb2ab6724ee1cc32a4be56da032d1cca0"
OLD_COMMIT = "67e2c98a60dc92283531412a9e604dd4bae005a9"


def ks(generation: int = 1, observed: int | None = 1, conditions: list[dict[str, Any]] | None
       = None, applied: str | None = f"master@sha1:{DOC_COMMIT}",
       suspend: bool | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": conditions if conditions is not None else [
        cond("Ready", "True", "ReconciliationSucceeded", generation)]}
    if observed is not None:
        status["observedGeneration"] = observed
    if applied is not None:
        status["lastAppliedRevision"] = applied
    return {"metadata": {"name": "podinfo", "namespace": "default", "generation": generation},
            "spec": {"suspend": suspend}, "status": status}


def cond(ctype: str, status: str, reason: str, generation: int | None = None) -> dict[str, Any]:
    c = {"type": ctype, "status": status, "reason": reason, "message": ""}
    if generation is not None:
        c["observedGeneration"] = generation
    return c


def test_the_docs_ready_kustomization_is_ready_at_its_applied_revision() -> None:
    # "Ready True ... Applied revision: master@sha1:4507..." (the spec's first example)
    j = judge.judge("Kustomization", ks(), DOC_COMMIT)
    assert j.ready and j.status == judge.CURRENT and j.at_commit


def test_a_ready_kustomization_at_another_commit_is_not_ready_at_the_commit_under_test() -> None:
    j = judge.judge("Kustomization", ks(), OLD_COMMIT)
    assert not j.ready and j.status == judge.CURRENT and j.at_commit is False


def test_the_docs_debugging_example_is_not_ready() -> None:
    # `kubectl describe` in "Debugging a Kustomization": generation 3 being retried
    # (Reconciling ProgressingWithRetry, Ready False ArtifactFailed), observedGeneration 2,
    # lastAppliedRevision still names the commit in the pre-2.0 form.
    obj = ks(generation=3, observed=2, applied=f"master/{OLD_COMMIT}", conditions=[
        cond("Reconciling", "True", "ProgressingWithRetry", 3),
        cond("Ready", "False", "ArtifactFailed", 3)])
    j = judge.judge("Kustomization", obj, OLD_COMMIT)
    assert not j.ready and j.status == judge.IN_PROGRESS and j.at_commit is True


def test_reconciling_with_ready_unknown_is_in_progress() -> None:
    # "Reconciling Kustomization": Reconciling=True reason Progressing, Ready Unknown.
    obj = ks(conditions=[cond("Reconciling", "True", "Progressing", 1),
                         cond("Ready", "Unknown", "Progressing", 1)])
    assert judge.judge("Kustomization", obj, DOC_COMMIT).status == judge.IN_PROGRESS


@pytest.mark.parametrize("reason", ["PruneFailed", "ArtifactFailed", "BuildFailed",
                                    "HealthCheckFailed", "DependencyNotReady",
                                    "ReconciliationFailed"])
def test_the_documented_failure_reasons_are_not_ready_but_retried(reason: str) -> None:
    # "Failed Kustomization": Ready=False with these reasons; the controller keeps retrying,
    # so kstatus calls it InProgress, not Failed.
    j = judge.judge("Kustomization", ks(conditions=[cond("Ready", "False", reason, 1)]),
                    DOC_COMMIT)
    assert not j.ready and j.status == judge.IN_PROGRESS


def test_stalled_is_failed() -> None:
    obj = ks(conditions=[cond("Stalled", "True", "InvalidPath", 1),
                         cond("Ready", "False", "InvalidPath", 1)])
    j = judge.judge("Kustomization", obj, DOC_COMMIT)
    assert j.status == judge.FAILED and not j.ready


def test_ready_for_an_older_generation_is_not_ready() -> None:
    # observedGeneration is "the latest generation which resulted in a ready state": a spec
    # change (generation 2) not yet reconciled leaves Ready=True of generation 1 behind.
    obj = ks(generation=2, observed=1, conditions=[cond("Ready", "True",
                                                        "ReconciliationSucceeded", 1)])
    assert judge.judge("Kustomization", obj, DOC_COMMIT).status == judge.IN_PROGRESS


def test_ready_condition_of_an_older_generation_is_not_ready_even_if_status_caught_up() -> None:
    obj = ks(generation=2, observed=2, conditions=[cond("Ready", "True",
                                                        "ReconciliationSucceeded", 1)])
    assert not judge.judge("Kustomization", obj, DOC_COMMIT).ready


def test_no_status_yet_is_in_progress() -> None:
    obj = {"metadata": {"name": "a", "generation": 1}, "spec": {}}
    assert judge.judge("Kustomization", obj, DOC_COMMIT).status == judge.IN_PROGRESS


def test_suspended_is_never_ready() -> None:
    assert not judge.judge("Kustomization", ks(suspend=True), DOC_COMMIT).ready


def test_being_deleted_is_in_progress() -> None:
    obj = ks()
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert judge.judge("Kustomization", obj, DOC_COMMIT).status == judge.IN_PROGRESS


def git(revision: str | None, ready: str = "True") -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": 1,
                              "conditions": [cond("Ready", ready, "Succeeded", 1)]}
    if revision:
        status["artifact"] = {"revision": revision}
    return {"metadata": {"name": "flux-system", "generation": 1}, "spec": {}, "status": status}


@pytest.mark.parametrize("revision", [f"master@sha1:{DOC_COMMIT}", f"sha1:{DOC_COMMIT}",
                                      f"master/{DOC_COMMIT}", f"v1.0.1@sha1:{DOC_COMMIT}"])
def test_a_git_repository_artifact_names_the_commit_in_every_documented_format(
        revision: str) -> None:
    assert judge.judge("GitRepository", git(revision), DOC_COMMIT).ready


def test_a_git_repository_without_an_artifact_or_at_another_commit_is_not_ready() -> None:
    assert not judge.judge("GitRepository", git(None), DOC_COMMIT).ready
    assert not judge.judge("GitRepository", git(f"main@sha1:{OLD_COMMIT}"), DOC_COMMIT).ready


def test_commit_parsing_rejects_what_is_not_a_commit() -> None:
    assert judge.commit_of("main@sha256:") is None
    assert judge.commit_of("6.5.0") is None  # a chart version (HelmRepository source)
    assert judge.commit_of(None) is None
    assert not judge.names_commit("main@sha1:450796", DOC_COMMIT)  # 6 hex: too short to say


def helm(chart_version: str | None, ready: str = "True") -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": 1,
                              "conditions": [cond("Ready", ready, "InstallSucceeded", 1)]}
    if chart_version:
        status["history"] = [{"chartVersion": chart_version, "status": "deployed"}]
    return {"metadata": {"name": "hr", "generation": 1}, "spec": {}, "status": status}


def test_a_release_of_a_chart_from_git_is_ready_only_from_the_commit_under_test() -> None:
    # reconcileStrategy: Revision versions the chart 0.1.0+<first 12 hex of the commit>.
    assert judge.judge("HelmRelease", helm(f"0.1.0+{DOC_COMMIT[:12]}"), DOC_COMMIT).ready
    assert not judge.judge("HelmRelease", helm(f"0.1.0+{OLD_COMMIT[:12]}"), DOC_COMMIT).ready


def test_a_release_of_a_repository_chart_needs_only_ready_for_its_generation() -> None:
    assert judge.judge("HelmRelease", helm("6.5.0"), DOC_COMMIT).ready
    assert not judge.judge("HelmRelease", helm("6.5.0", ready="False"), DOC_COMMIT).ready


def ev(t: float, obj: dict[str, Any], etype: str = "MODIFIED",
       kind: str = "Kustomization") -> dict[str, Any]:
    return {"t": t, "type": etype, "kind": kind, "ref": f"{kind}/default/podinfo",
            "object": obj}


def test_ready_times_take_the_first_ready_event_and_keep_it() -> None:
    events = [ev(1.0, ks(conditions=[cond("Ready", "Unknown", "Progressing", 1)])),
              ev(2.0, ks()),
              ev(3.0, ks(conditions=[cond("Reconciling", "True", "Progressing", 1)]))]
    assert judge.ready_times(events, DOC_COMMIT) == {"Kustomization/default/podinfo": 2.0}
    assert judge.last_ready(judge.ready_times(events, DOC_COMMIT)) == 2.0


def test_an_object_never_ready_keeps_convergence_open_and_a_deleted_one_does_not() -> None:
    pending = [ev(1.0, ks(applied=f"master@sha1:{OLD_COMMIT}"))]
    assert judge.ready_times(pending, DOC_COMMIT) == {"Kustomization/default/podinfo": None}
    assert judge.last_ready(judge.ready_times(pending, DOC_COMMIT)) is None
    gone = [*pending, ev(2.0, ks(applied=None), etype="DELETED")]
    assert judge.ready_times(gone, DOC_COMMIT) == {}


def test_the_commit_may_be_given_as_a_revision_string() -> None:
    assert judge.judge("Kustomization", ks(), f"main@sha1:{DOC_COMMIT}").ready


def test_the_judge_shares_no_code_with_drdrills_readiness() -> None:
    import subprocess
    import sys

    code = ("import sys, harness.bench.judge; "
            "print(sorted(m for m in sys.modules if m.startswith('harness')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert "harness.converge" not in loaded and "harness.flux" not in loaded, loaded
    assert "'harness.bench.stats'" not in loaded, loaded
