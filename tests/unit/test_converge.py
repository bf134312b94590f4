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
from harness.core.recorder import outcome_of
from harness.errors import DrillEnvironmentError, ObjectFailed

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


def test_kustomization_needs_the_applied_not_the_attempted_revision():
    obj = ks("a")
    obj["status"] = {"conditions": obj["status"]["conditions"], "lastAttemptedRevision": REV}
    assert not readiness(obj, "Kustomization", revision=REV).ready


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


def test_only_an_object_turning_ready_or_going_away_can_complete_convergence():
    # The run loop checks completion (O(objects)) only after these events.
    c = Converger(api=None, revision=REV, expected=set())
    assert not c._fold(KUSTOMIZATIONS, "ADDED", ks("a", ready="False",
                                                   reason="DependencyNotReady"), 1.0)
    assert c._fold(KUSTOMIZATIONS, "MODIFIED", ks("a"), 2.0)
    assert not c._fold(KUSTOMIZATIONS, "MODIFIED", ks("a"), 3.0)  # already done
    assert not c._fold(KUSTOMIZATIONS, "ADDED", ks("b", ready="False", reason="Progressing"),
                       4.0)
    assert c._fold(KUSTOMIZATIONS, "DELETED", ks("b"), 5.0) and c._done()


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


def gitrepo(name, *, ready="False", reason="GitOperationFailed", message="connection refused",
            rev=None, url="http://127.0.0.1:1/remote.git"):
    return {"metadata": {"name": name, "namespace": "flux-system", "generation": 1},
            "spec": {"url": url},
            "status": {"artifact": {"revision": rev} if rev else None, "conditions": [
                {"type": "Ready", "status": ready, "reason": reason, "message": message,
                 "observedGeneration": 1}]}}


def test_unchanged_failure_fails_after_the_stuck_window_naming_the_url():
    c = Converger(api=None, revision=REV, expected=set(), stuck_after_s=30)
    fold(c, GIT_REPOSITORIES, gitrepo("remote"), 1.0)
    c.check_stuck(20.0)  # still within Flux's retries
    fold(c, GIT_REPOSITORIES, gitrepo("remote"), 25.0)  # same reason and message again
    with pytest.raises(DrillEnvironmentError) as err:  # an unreachable remote: "broken"
        c.check_stuck(31.5)
    text = str(err.value)
    assert "GitRepository/flux-system/remote" in text and "http://127.0.0.1:1/remote.git" in text
    assert "connection refused" in text and "unchanged for 30s" in text


def test_progressing_between_retries_does_not_restart_the_window():
    c = Converger(api=None, revision=REV, expected=set(), stuck_after_s=30)
    fold(c, GIT_REPOSITORIES, gitrepo("remote"), 1.0)
    fold(c, GIT_REPOSITORIES, gitrepo("remote", reason="Progressing", message="building"), 20.0)
    fold(c, GIT_REPOSITORIES, gitrepo("remote"), 25.0)
    with pytest.raises(DrillEnvironmentError) as err:
        c.check_stuck(31.5)
    assert "connection refused" in str(err.value)


def test_waiting_on_a_source_that_never_appears_fails():
    c = Converger(api=None, revision=REV, expected=set(), stuck_after_s=30)
    gone = ks("k") | {"spec": {"sourceRef": {"kind": "GitRepository", "name": "gone"}},
                      "status": {"conditions": [{
                          "type": "Ready", "status": "False", "reason": "ArtifactFailed",
                          "message": 'GitRepository "gone" not found', "observedGeneration": 2}]}}
    fold(c, KUSTOMIZATIONS, gone, 1.0)
    assert "not in the cluster" in c.objects["Kustomization/flux-system/k"].waiting_on
    with pytest.raises(ObjectFailed):
        c.check_stuck(32.0)


def test_a_changing_failure_restarts_the_window_and_waits_never_count():
    c = Converger(api=None, revision=REV, expected={"GitRepository/flux-system/flux-system"},
                  stuck_after_s=30)
    fold(c, GIT_REPOSITORIES, gitrepo("r", message="first"), 1.0)
    fold(c, GIT_REPOSITORIES, gitrepo("r", message="second"), 20.0)
    c.check_stuck(45.0)  # second message only 25 s old
    fold(c, KUSTOMIZATIONS, ks("apps", ready="False", reason="DependencyNotReady"), 1.0)
    waiting = ks("src") | {"status": {"conditions": [{
        "type": "Ready", "status": "False", "reason": "ArtifactFailed",
        "message": "Source artifact not found, retrying in 30s", "observedGeneration": 2}]}}
    fold(c, KUSTOMIZATIONS, waiting, 1.0)
    assert c.objects["Kustomization/flux-system/src"].waiting_on == \
        "source GitRepository/flux-system/flux-system not ready"
    c.check_stuck(49.0)  # waiting on a dependency or a source is never a failure of its own


def test_kind_no_controller_serves_is_broken_at_once():
    c = Converger(api=None, revision=REV, expected=set())
    msg = ('ResourceSet/apps/tenants dry-run failed: no matches for kind "ResourceSet" in '
           'version "fluxcd.controlplane.io/v1"')
    with pytest.raises(DrillEnvironmentError) as err:
        fold(c, KUSTOMIZATIONS, ks("apps", ready="False", reason="ReconciliationFailed") |
             {"status": {"conditions": [{"type": "Ready", "status": "False",
                                         "reason": "ReconciliationFailed", "message": msg,
                                         "observedGeneration": 2}]}}, 1.0)
    assert "flux-operator" in err.value.cause and "ResourceSet" in str(err.value)
    assert outcome_of(err.value) == "broken"


def test_feature_gate_the_drill_left_off_is_broken_at_once():
    c = Converger(api=None, revision=REV, expected=set())
    msg = ("can't access 'ExternalArtifact/flux-system/apps', ExternalArtifact feature gate "
           "is disabled")
    with pytest.raises(DrillEnvironmentError) as err:
        fold(c, KUSTOMIZATIONS, ks("apps", ready="False", reason="ArtifactFailed") |
             {"status": {"conditions": [{"type": "Ready", "status": "False",
                                         "reason": "ArtifactFailed", "message": msg,
                                         "observedGeneration": 2}]}}, 1.0)
    assert "feature gate ExternalArtifact" in err.value.cause
    assert "--feature-gates=ExternalArtifact=true" in (err.value.fix or "")


def test_unreachable_remote_is_broken_and_names_the_url_but_a_404_is_the_repos():
    c = Converger(api=None, revision=REV, expected=set(), own_urls=("http://127.0.0.1:4000/",))
    t = Tracked("HelmRepository", "podinfo", "podinfo", 0.0)
    t.url = "https://stefanprodan.github.io/podinfo"
    down = ('failed to fetch Helm repository index: failed to cache index to temporary file: '
            'Get "https://stefanprodan.github.io/podinfo/index.yaml": dial tcp: lookup '
            'stefanprodan.github.io: no such host')
    state = readiness(ks("x", ready="False", reason="Failed"), "Kustomization", revision=REV)
    bad = state.__class__(False, False, "Failed", down, None)
    with pytest.raises(DrillEnvironmentError) as err:
        c.fail(t, bad, held_s=30)
    assert "https://stefanprodan.github.io/podinfo" in err.value.cause
    missing = state.__class__(False, False, "Failed", 'failed to fetch index: 404 Not Found',
                              None)
    with pytest.raises(ObjectFailed):
        c.fail(t, missing, held_s=30)
    own = Tracked("GitRepository", "flux-system", "flux-system", 0.0)
    own.url = "http://127.0.0.1:4000/repo.git"
    refused = state.__class__(False, False, "GitOperationFailed",
                              "dial tcp 127.0.0.1:4000: connect: connection refused", None)
    with pytest.raises(DrillEnvironmentError) as err:
        c.fail(own, refused, held_s=30)  # the drill's own server: not the repo's fault either
    assert "own Git server" in err.value.cause


def test_webhook_failure_names_webhook_installer_and_provider():
    c = Converger(api=None, revision=REV, expected=set(),
                  webhooks={"webhook.cert-manager.io": "ValidatingWebhookConfiguration/"
                                                       "cert-manager-webhook (applied by "
                                                       "HelmRelease/cert-manager/cert-manager)"})
    msg = ('ClusterIssuer/letsencrypt dry-run failed: Internal error occurred: failed calling '
           'webhook "webhook.cert-manager.io": failed to call webhook: Post '
           '"https://cert-manager-webhook.cert-manager.svc:443/validate": connect: connection '
           'refused')
    t = Tracked("Kustomization", "flux-system", "issuers", 0.0)
    state = readiness(ks("issuers", ready="False", reason="ReconciliationFailed"),
                      "Kustomization", revision=REV)
    text = c.diagnose(t, state.__class__(False, False, state.reason, msg, None))
    assert "webhook.cert-manager.io" in text and "HelmRelease/cert-manager/cert-manager" in text
    assert "--provider kind" in text
    by_chart = Converger(api=None, revision=REV, expected=set(), webhooks={
        "kyverno": "HelmRelease/kyverno/kyverno (chart kyverno)"})
    msg = 'failed calling webhook "validate.kyverno.svc-fail": connection refused'
    text = by_chart.diagnose(t, state.__class__(False, False, "ReconciliationFailed", msg, None))
    assert "installed by HelmRelease/kyverno/kyverno (chart kyverno)" in text


def test_summary_names_what_holds_convergence_up_first():
    c = Converger(api=None, revision=REV, expected={"Kustomization/flux-system/later"})
    fold(c, KUSTOMIZATIONS, ks("flux-system"), 1.0)
    fold(c, KUSTOMIZATIONS, ks("apps", ready="False", reason="DependencyNotReady",
                               deps=["infra"]), 2.0)
    fold(c, KUSTOMIZATIONS, ks("infra", ready="False", reason="Progressing",
                               ) | {"status": {"conditions": [{
                                   "type": "Ready", "status": "False", "reason": "Progressing",
                                   "message": "health check of Deployment/x/y in progress",
                                   "observedGeneration": 2}]}}, 2.0)
    line = c.summary()
    assert line.startswith("converge: 1/4 ready; waiting on Kustomization/flux-system/infra "
                           "(health check")
    assert "Kustomization/flux-system/apps (dependency flux-system/infra not ready)" in line
    assert "Kustomization/flux-system/later (not applied yet)" in line


def test_only_the_sync_source_must_be_at_the_commit():
    c = Converger(api=None, revision=REV, expected=set())
    fold(c, GIT_REPOSITORIES, gitrepo("other", ready="True", reason="Succeeded",
                                      rev="main@sha1:" + "a" * 40), 1.0)
    assert c.objects["GitRepository/flux-system/other"].ready_after_s == 1.0
    fold(c, GIT_REPOSITORIES, gitrepo("flux-system", ready="True", reason="Succeeded",
                                      rev="main@sha1:" + "a" * 40), 1.0)
    assert c.objects["GitRepository/flux-system/flux-system"].ready_after_s is None
    helm_oci = {"metadata": {"name": "charts", "namespace": "flux-system", "generation": 1},
                "spec": {"type": "oci", "url": "oci://ghcr.io/x"}, "status": {}}
    assert readiness(helm_oci, "HelmRepository", revision=REV).ready


def test_each_object_ready_or_failed_is_one_progress_line():
    lines: list[str] = []
    c = Converger(api=None, revision=REV, expected={"Kustomization/flux-system/b"},
                  on_progress=lines.append)
    fold(c, KUSTOMIZATIONS, ks("a"), 1.25)
    fold(c, KUSTOMIZATIONS, ks("a"), 2.0)  # already ready: no second line
    assert lines == ["ready: Kustomization/flux-system/a after 1.2s (1/2)"]
    with pytest.raises(ObjectFailed):
        fold(c, KUSTOMIZATIONS, ks("b", stalled=True), 3.0)
    assert lines[1].startswith("failed: Kustomization/flux-system/b: ")
    assert "path not found" in lines[1]


def test_a_webhook_without_a_pod_is_the_embedded_clusters_limit_not_the_repos():
    msg = ('ClusterIssuer/letsencrypt dry-run failed: Internal error occurred: failed calling '
           'webhook "webhook.cert-manager.io": failed to call webhook: Post '
           '"https://cert-manager-webhook.cert-manager.svc:443/validate": connect: connection '
           'refused')
    t = Tracked("Kustomization", "flux-system", "issuers", 0.0)
    state = readiness(ks("issuers", ready="False", reason="ReconciliationFailed"),
                      "Kustomization", revision=REV)
    failing = state.__class__(False, False, "ReconciliationFailed", msg, None)
    with pytest.raises(DrillEnvironmentError) as err:
        Converger(api=None, revision=REV, expected=set()).fail(t, failing, held_s=30)
    assert "webhook.cert-manager.io" in err.value.cause and "kind or lab" in (err.value.fix or "")
    real = Converger(api=None, revision=REV, expected=set(), webhooks_unrunnable=False)
    with pytest.raises(ObjectFailed):  # on kind its pod runs: not answering is the repo's
        real.fail(t, failing, held_s=30)


def test_a_flux_message_keeps_what_follows_its_first_newline():
    from harness.converge import _first_line, _whole

    msg = ("kustomize build failed: trouble configuring builtin PatchTransformer with config: \n"
           "```\npath: patch.yaml\n```\n: unable to parse SM or JSON patch from [nope]")
    assert _whole(msg) == msg  # the report: every line
    line = _first_line(msg)  # a progress line: one line, the cause still in it
    assert "\n" not in line and "unable to parse SM or JSON patch" in line
    long = "head " + "x" * 5000 + " the cause"
    assert _whole(long).endswith("the cause") and len(_whole(long)) < 4100
    assert _first_line(long).endswith("the cause") and len(_first_line(long)) <= 300


def test_a_helm_chart_ready_before_its_artifact_still_reports_its_revision():
    """source-controller can patch Ready=True a moment before status.artifact: the revision
    that arrives after the object was seen ready still goes into the report."""
    from harness.converge import WatchedKind, by_kind

    kind = WatchedKind.of(by_kind("HelmChart"))
    c = Converger(api=None, revision=REV, expected=set())

    def chart(artifact: dict | None) -> dict:
        status = {"observedGeneration": 1, "conditions": [
            {"type": "Ready", "status": "True", "observedGeneration": 1,
             "reason": "ChartPackageSucceeded"}]}
        if artifact is not None:
            status["artifact"] = artifact
        return {"metadata": {"namespace": "flux-system", "name": "hello", "generation": 1},
                "spec": {}, "status": status}

    assert c._fold(kind, "ADDED", chart(None), 1.0)
    c._fold(kind, "MODIFIED", chart({"revision": "0.1.0+abc"}), 1.1)
    assert c.objects["HelmChart/flux-system/hello"].revision == "0.1.0+abc"
