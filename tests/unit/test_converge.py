from __future__ import annotations

import pytest

from harness.converge import (
    GIT_REPOSITORIES,
    KUSTOMIZATIONS,
    Converger,
    Tracked,
    critical_path,
    readiness,
)
from harness.errors import ObjectFailed

pytestmark = pytest.mark.unit

SHA = "0123456789abcdef0123456789abcdef01234567"
REV = f"main@sha1:{SHA}"


def ks(name, *, ready="True", gen=2, observed=2, rev=REV, reason="ReconciliationSucceeded",
       deps=(), suspend=False, stalled=False, labels=None):
    conds = [{"type": "Ready", "status": ready, "reason": reason, "message": "m",
              "observedGeneration": observed}]
    if stalled:
        conds.append({"type": "Stalled", "status": "True", "reason": "InvalidPath",
                      "message": "path not found"})
    return {
        "metadata": {"name": name, "namespace": "flux-system", "generation": gen,
                     "labels": labels or {}},
        "spec": {"dependsOn": [{"name": d} for d in deps], "suspend": suspend,
                 "sourceRef": {"kind": "GitRepository", "name": "flux-system"}},
        "status": {"conditions": conds, "lastAppliedRevision": rev},
    }


def test_ready_at_revision_for_current_generation():
    assert readiness(ks("a"), "Kustomization", revision=REV).ready


def test_not_ready_for_old_generation():
    state = readiness(ks("a", gen=3, observed=2), "Kustomization", revision=REV)
    assert not state.ready and not state.failed


def test_not_ready_at_other_revision():
    state = readiness(ks("a", rev="main@sha1:" + "f" * 40), "Kustomization", revision=REV)
    assert not state.ready and state.reason == "OtherRevision"


def test_stalled_and_suspended_fail_at_once():
    assert readiness(ks("a", stalled=True), "Kustomization", revision=REV).failed
    assert readiness(ks("a", suspend=True), "Kustomization", revision=REV).failed


def test_terminal_reason_fails_but_dependency_wait_does_not():
    assert readiness(ks("a", ready="False", reason="BuildFailed"), "Kustomization",
                     revision=REV).failed
    assert not readiness(ks("a", ready="False", reason="DependencyNotReady"), "Kustomization",
                         revision=REV).failed


def test_git_repository_needs_the_artifact_revision():
    repo = {"metadata": {"name": "flux-system", "namespace": "flux-system", "generation": 1},
            "spec": {}, "status": {"artifact": {"revision": REV}, "conditions": [
                {"type": "Ready", "status": "True", "observedGeneration": 1}]}}
    assert readiness(repo, "GitRepository", revision=REV).ready
    repo["status"]["artifact"]["revision"] = "main@sha1:" + "e" * 40
    assert not readiness(repo, "GitRepository", revision=REV).ready


def fold(converger, kind, obj, now):
    converger._fold(kind, "MODIFIED", obj, now)


def test_converger_enumerates_objects_as_they_appear():
    c = Converger(api=None, revision=REV, expected={"Kustomization/flux-system/flux-system"})
    fold(c, KUSTOMIZATIONS, ks("flux-system"), 1.0)
    assert c._done()  # only the expected one is known yet
    fold(c, KUSTOMIZATIONS, ks("apps", ready="False", reason="DependencyNotReady"), 2.0)
    assert not c._done()
    fold(c, KUSTOMIZATIONS, ks("apps"), 5.5)
    assert c._done()
    assert c.objects["Kustomization/flux-system/apps"].ready_after_s == 5.5
    assert c.objects["Kustomization/flux-system/apps"].first_seen_s == 2.0


def test_converger_keeps_first_ready_time_when_ready_flips():
    c = Converger(api=None, revision=REV, expected=set())
    fold(c, KUSTOMIZATIONS, ks("a"), 1.0)
    fold(c, KUSTOMIZATIONS, ks("a", ready="False", reason="Progressing"), 2.0)
    assert c.objects["Kustomization/flux-system/a"].ready_after_s == 1.0


def test_converger_raises_for_stalled_object():
    c = Converger(api=None, revision=REV, expected=set())
    with pytest.raises(ObjectFailed) as err:
        fold(c, KUSTOMIZATIONS, ks("a", stalled=True), 1.0)
    assert "Kustomization/flux-system/a" in str(err.value)
    assert "path not found" in str(err.value)


def test_pending_names_objects_never_seen():
    c = Converger(api=None, revision=REV, expected={"Kustomization/flux-system/x"})
    fold(c, GIT_REPOSITORIES, {"metadata": {"name": "g", "namespace": "flux-system",
                                            "generation": 1}, "spec": {}, "status": {}}, 1.0)
    pending = c._pending()
    assert pending["Kustomization/flux-system/x"] == "never appeared in the cluster"
    assert "no Ready condition" in pending["GitRepository/flux-system/g"]


def t(kind, name, seen, ready, deps=(), parent=None, source=None):
    return Tracked(kind, "flux-system", name, seen, tuple(f"flux-system/{d}" for d in deps),
                   ready, parent=parent, source=source)


def test_critical_path_follows_the_chain_that_finished_last():
    objs = {o.ref: o for o in [
        t("GitRepository", "flux-system", 0.5, 1.0),
        t("Kustomization", "flux-system", 0.6, 2.0, source="GitRepository/flux-system/flux-system"),
        t("Kustomization", "crds", 2.0, 3.0, parent="Kustomization/flux-system/flux-system"),
        t("Kustomization", "controllers", 2.0, 6.0, deps=["crds"],
          parent="Kustomization/flux-system/flux-system"),
        t("Kustomization", "apps", 2.0, 9.0, deps=["controllers"],
          parent="Kustomization/flux-system/flux-system"),
        t("Kustomization", "side", 2.0, 4.0, parent="Kustomization/flux-system/flux-system"),
    ]}
    path = critical_path(objs)
    refs = [h.ref for h in path]
    assert refs[-3:] == ["Kustomization/flux-system/crds", "Kustomization/flux-system/controllers",
                         "Kustomization/flux-system/apps"]
    assert refs[0] == "GitRepository/flux-system/flux-system"
    apps = path[-1]
    assert apps.waited_on_dependency_s == pytest.approx(4.0)  # seen at 2, controllers ready at 6
    assert apps.reconcile_s == pytest.approx(3.0)


def test_critical_path_empty_without_ready_objects():
    assert critical_path({}) == []
