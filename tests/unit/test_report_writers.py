"""The report writers: report.json (the contract), Markdown, JUnit, Allure results, redaction."""

from __future__ import annotations

import dataclasses
import errno
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import NotConverged, ObjectFailed, ReportError, RolloutFailed, RTOExceeded
from harness.report import allure as allure_mod
from harness.report import writers
from harness.report.allure import CATEGORIES, DR_FAILURE_REGEX, write_allure_results
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.model import (
    CriticalHop,
    DrillReport,
    FigureItem,
    ManualStep,
    ObjectRecord,
    PhaseRecord,
    RecoveryFigure,
)
from harness.report.redact import REDACTED, redact, redact_data
from harness.report.writers import write_all, write_json

pytestmark = pytest.mark.unit

# -- planted secrets ------------------------------------------------------------------------

PEM_KEY = ("-----BEGIN RSA PRIVATE KEY-----\n"
           "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
           "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
           "-----END RSA PRIVATE KEY-----")
PEM_KEY_MARKER = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
CLIENT_KEY_DATA = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUZha2VrZXk="
AGE_KEY = "AGE-SECRET-KEY-1QQPZ7G9R4X5ZLJ8M3VN2K6T0Y8W4S9H7F2D5C3B1A0E9G8J7K6L5M4N3P"
BEARER = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImRyaWxsIn0.eyJzdWIiOiJkcmlsbCJ9.c2lnbmF0dXJl"
SA_TOKEN = "abcdef.0123456789abcdef"
SECRETS = (PEM_KEY_MARKER, CLIENT_KEY_DATA, AGE_KEY, BEARER, SA_TOKEN)

REV = "4f6c2b1e9a0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b"
KS = "Kustomization"


# -- a realistic report, built by hand -------------------------------------------------------

def _phases(*, converge2: str = "passed", verify2: str = "failed",
            secret: bool = True) -> tuple[PhaseRecord, ...]:
    t = 0.0
    out = []
    spec = [
        ("preflight", 1, 0.8, "passed", None),
        ("provision", 1, 14.2, "passed", None),
        ("bootstrap", 1, 9.1, "passed", None),
        ("converge", 1, 46.8, "passed", None),
        ("verify", 1, 3.0, "passed", None),
        ("disaster", 1, 2.4, "passed", None),
        ("provision", 2, 13.9, "passed", None),
        ("bootstrap", 2, 21.7, "passed", None),
        ("converge", 2, 48.6, converge2,
         None if converge2 == "passed" else
         "not converged at 4f6c2b1 within 300s\n  Kustomization/flux-system/apps: "
         "dependency 'flux-system/infrastructure' is not ready"),
        ("verify", 2, 5.5, verify2,
         None if verify2 == "passed" else
         "workloads not rolled out: podinfo 0/2 | ready\n  Deployment podinfo/podinfo"),
        ("report", 0, 1.2, "passed", None),
        ("teardown", 0, 0.7, "broken",
         "ProviderError: \x1b[31metcd\x1b[0m did not stop; log tail:\n"
         + (PEM_KEY if secret else "(empty)")),
    ]
    for name, rnd, dur, outcome, error in spec:
        secs = int(t)
        out.append(PhaseRecord(
            name=name, started_at=f"2024-05-04T10:{secs // 60:02d}:{secs % 60:02d}.000Z",
            duration_s=dur, outcome=outcome, error=error, round=rnd, offset_s=t))  # type: ignore[arg-type]
        t += dur
    return tuple(out)


def _objects(rnd: int, *, all_ready: bool = True) -> list[ObjectRecord]:
    def obj(kind, ns, name, ready, deps=(), first=1.0, message=None):
        ok = ready is not None
        return ObjectRecord(kind=kind, namespace=ns, name=name, ready_after_s=ready,
                            revision=f"main@sha1:{REV}" if ok else None, depends_on=deps,
                            round=rnd, first_seen_s=first, ready=ok, message=message)

    apps_ready = 84.2 if all_ready else None
    return [
        obj("GitRepository", "flux-system", "flux-system", 38.4, first=36.0),
        obj(KS, "flux-system", "flux-system", 41.0, first=36.1),
        obj(KS, "flux-system", "infrastructure", 58.9, first=41.3),
        obj(KS, "flux-system", "apps", apps_ready, ("flux-system/infrastructure",), first=41.3,
            message=None if all_ready else "dependency 'flux-system/infrastructure' not ready"),
        obj(KS, "flux-system", "monitoring", 66.0, ("flux-system/infrastructure",), first=41.4),
        obj(KS, "flux-system", "tenants", 61.5, ("flux-system/infrastructure",), first=41.4),
        obj("HelmRelease", "podinfo", "podinfo", 79.9, first=60.2),
    ]


def make_report(*, secrets: bool = True, **changes) -> DrillReport:
    report = DrillReport(
        run_id="20240504-100000-a1b2",
        scenario="full-rebuild",
        provider="embedded",
        repo="/srv/git/home-ops",
        revision=REV,
        verdict="failed",
        started_at="2024-05-04T10:00:00.000Z",
        time_to_ready_s=84.2,
        rto_target_s=60.0,
        phases=_phases(secret=secrets),
        objects=tuple(_objects(1) + _objects(2)),
        manual_steps=(
            ManualStep("import-age-key", "Import the SOPS age key", "operator", 12.0, True, 1),
            ManualStep("import-age-key", "Import the SOPS age key", "operator", 11.5, True, 2),
            ManualStep("deploy-key", "Add the Git deploy key | read-only", "drill (simulated)",
                       1.5, False, 2),
        ),
        critical_path=(
            CriticalHop("GitRepository/flux-system/flux-system", 38.4, 0.0, 2.4),
            CriticalHop("Kustomization/flux-system/infrastructure", 58.9, 41.0, 17.9),
            CriticalHop("Kustomization/flux-system/apps", 84.2, 58.9, 25.3),
        ),
        settings={
            "versions": {"kube-apiserver": "v1.31.1", "etcd": "v3.5.16",
                         "kustomize-controller": "v1.4.0", "source-controller": "v1.4.1"},
            "flux": {"controllers": {"kustomize-controller": "v1.4.0"},
                     "flags": {"kustomize-controller": ["--concurrent=6",
                                                        "--requeue-dependency=2s"]},
                     "requeue_dependency": "2s", "concurrent": 6, "git_interval": "1m"},
            "first_build_ttr_s": 70.1,
            "local_run_changes": ["GitRepository flux-system: url ssh://git@github.com/o/r "
                                  "-> http://127.0.0.1:8081/r.git"],
        },
        diagnostics={"round2/kustomizations": "diagnostics/round2/kustomizations.yaml",
                     "round2/logs/kustomize-controller":
                         "diagnostics/round2/logs/kustomize-controller.log"},
        error="RolloutFailed: workloads not rolled out:\n  Deployment podinfo/podinfo: 0/2",
        cluster="clusters/dev",
        manual_inputs=({"kind": "Secret", "namespace": "flux-system", "name": "sops-age",
                        "needed_by": ["Kustomization/flux-system/apps"]},),
        notes=("the repo's flux-system GitRepository uses ssh; a real recovery needs the "
               "deploy key",),
        recovery_figures=(RecoveryFigure(
            "time_to_rebuild_s", "time-to-rebuild", 84.2, "Rebuild start until converged.",
            items=(FigureItem("Deployment podinfo/podinfo", None, "never rolled out"),),
            limit_s=60.0, met=False),),
        automated_steps=(ManualStep("provision-cluster", "Provide a cluster (embedded)",
                                    "drdrill (embedded provider)", 6.1, True, 2),),
    )
    if secrets:
        report = dataclasses.replace(
            report,
            error=report.error + f"\n  Authorization: Bearer {BEARER}",
            notes=(*report.notes, f"client-key-data: {CLIENT_KEY_DATA}", f"token: {SA_TOKEN}"),
            manual_steps=(*report.manual_steps,
                          ManualStep("age", f"paste {AGE_KEY} into the prompt", "operator", 0.5,
                                     False, 1)),
        )
    return dataclasses.replace(report, **changes)


def _all_text(root: Path, *, skip: Path | None = None) -> dict[Path, str]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and (skip is None or skip not in p.parents):
            out[p] = p.read_text(encoding="utf-8", errors="replace")
    return out


# -- report.json -----------------------------------------------------------------------------

CONTRACT_KEYS = {"run_id", "scenario", "provider", "repo", "revision", "verdict", "started_at",
                 "time_to_ready_s", "rto_target_s", "phases", "objects", "manual_steps",
                 "critical_path", "settings", "diagnostics", "schema_version"}


def test_report_json_has_the_contract_and_round_trips(tmp_path):
    report = make_report(secrets=False)
    path = write_json(report, tmp_path)
    assert path == tmp_path / "report.json"
    data = json.loads(path.read_text())
    assert data.keys() >= CONTRACT_KEYS
    assert next(iter(data)) == "schema_version" and data["schema_version"] == 2
    assert {"name", "started_at", "duration_s", "outcome", "error"} <= data["phases"][0].keys()
    assert {"kind", "namespace", "name", "ready_after_s", "revision",
            "depends_on"} <= data["objects"][0].keys()
    assert {"id", "description", "performed_by", "duration_s",
            "automatable"} <= data["manual_steps"][0].keys()
    assert data["verdict"] == "failed" and data["manual_step_count"] == 3

    # Round trip: the JSON rebuilds the same report.
    data.pop("manual_step_count")
    assert data.pop("recovery_manual_step_count") == 2
    assert data.pop("automated_step_count") == 1
    assert data.pop("recovery_figure") == {"name": "time_to_rebuild_s", "label": "time-to-rebuild",
                                           "value_s": 84.2, "met": False}
    rebuilt = DrillReport(**{
        **data,
        "phases": tuple(PhaseRecord(**p) for p in data["phases"]),
        "objects": tuple(ObjectRecord(**{**o, "depends_on": tuple(o["depends_on"]),
                                         "conditions": tuple(o["conditions"])})
                         for o in data["objects"]),
        "manual_steps": tuple(ManualStep(**m) for m in data["manual_steps"]),
        "critical_path": tuple(CriticalHop(**h) for h in data["critical_path"]),
        "manual_inputs": tuple(data["manual_inputs"]),
        "notes": tuple(data["notes"]),
        "recovery_figures": tuple(
            RecoveryFigure(**{**f, "items": tuple(FigureItem(**i) for i in f["items"])})
            for f in data["recovery_figures"]),
        "automated_steps": tuple(ManualStep(**m) for m in data["automated_steps"]),
        "external_dependencies": tuple(data["external_dependencies"]),
        "embedded_limits": tuple(data["embedded_limits"]),
        "output_lost": tuple(data["output_lost"]),
        "leftovers": tuple(data["leftovers"]),
    })
    assert rebuilt == report


def test_report_json_key_order_is_stable(tmp_path):
    a = write_json(make_report(), tmp_path / "a").read_text()
    b = write_json(make_report(), tmp_path / "b").read_text()
    assert a == b
    assert a.startswith('{\n  "schema_version": 2,\n  "run_id": ')


def test_report_json_is_replaced_atomically_and_disk_full_names_file_and_fix(tmp_path,
                                                                            monkeypatch):
    path = write_json(make_report(verdict="passed"), tmp_path)
    before = path.read_text()

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("harness.report.redact.os.fsync", full)
    with pytest.raises(ReportError) as err:
        write_json(make_report(), tmp_path)
    assert str(path) in str(err.value)
    assert "No space left on device" in str(err.value)
    assert err.value.fix is not None and "free space" in err.value.fix
    assert path.read_text() == before  # the old report is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temp file left


# -- Markdown --------------------------------------------------------------------------------

def test_markdown_headline_tables_and_escaping():
    md = render_markdown(make_report())
    headline = md.split("\n\n")[1]
    assert headline.startswith("**FAILED**")
    assert "time-to-ready **1m 24.2s**" in headline
    assert "RTO 1m 00.0s, **over by 24.2s**" in headline
    assert "**2** manual steps in the recovery (13.0s, 15% of time-to-ready)" in headline
    assert "Add the Git deploy key \\| read-only" in md
    assert "0/2 \\| ready" in md  # phase error in a cell
    assert "| 2 (recovery) | converge | 48.6s | passed |" in md
    assert ("| after | teardown | 0.7s | **broken**: ProviderError: etcd did not stop; "
            "log tail: |") in md
    assert "\x1b" not in md
    assert "| Manual steps (recovery / all) | 2 / 4 |" in md
    assert "| `Kustomization/flux-system/apps` | 1m 24.2s | 58.9s | 25.3s |" in md
    assert "| kube-apiserver | `v1.31.1` |" in md
    assert "- `flags.kustomize-controller`: `--concurrent=6 --requeue-dependency=2s`" in md
    assert "- [round2/kustomizations](diagnostics/round2/kustomizations.yaml)" in md
    assert "```text\nRolloutFailed: workloads not rolled out" in md
    # Every table row has the same number of unescaped pipes as its header.
    for block in re.findall(r"(?:^\|.*\|$\n?)+", md, re.MULTILINE):
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in block.strip().splitlines()}
        assert len(widths) == 1, block
    assert not re.search("[\u2600-\u27bf\U0001f000-\U0001ffff]", md)  # no emoji


def test_markdown_slowest_objects_puts_never_ready_first_and_keeps_five():
    objects = tuple(_objects(1) + _objects(2, all_ready=False))
    md = render_markdown(make_report(objects=objects, time_to_ready_s=None, verdict="failed"))
    section = md.split("### Slowest objects (round 2)")[1].split("###")[0]
    rows = [r for r in section.splitlines() if r.startswith("| `")]
    assert len(rows) == 5
    assert rows[0].startswith("| `Kustomization/flux-system/apps` | not ready: dependency")
    assert rows[1].startswith("| `HelmRelease/podinfo/podinfo` | 1m 19.9s")
    assert "2 more in `report.json`." in section
    assert "time-to-ready **not reached**" in md


def test_markdown_passed_and_missing_settings():
    md = render_markdown(make_report(verdict="passed", error=None, rto_target_s=300.0,
                                     settings={}, diagnostics={}, secrets=False))
    assert "**PASSED**" in md and "3m 35.8s to spare" in md
    assert "### Versions" not in md and "### Error" not in md and "### Diagnostics" not in md


# -- JUnit -----------------------------------------------------------------------------------

def test_junit_one_testcase_per_phase_with_failure_error_skipped():
    report = make_report(phases=_phases(converge2="failed", verify2="skipped"))
    root = ET.fromstring(render_junit(report))
    suites = root.findall("testsuite")
    assert len(suites) == 1 and suites[0].get("name") == "drdrill.full-rebuild"
    cases = suites[0].findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        (f"full-rebuild.round{p.round}", p.name) for p in report.phases]
    by_key = {(c.get("classname"), c.get("name")): c for c in cases}
    converge = by_key[("full-rebuild.round2", "converge")]
    failure = converge.find("failure")
    assert failure is not None and failure.get("message") == "not converged at 4f6c2b1 within 300s"
    assert "dependency 'flux-system/infrastructure'" in (failure.text or "")
    assert by_key[("full-rebuild.round2", "verify")].find("skipped") is not None
    teardown = by_key[("full-rebuild.round0", "teardown")]
    error = teardown.find("error")
    assert error is not None and teardown.find("failure") is None
    assert (error.text or "").startswith("ProviderError: etcd did not stop")
    assert PEM_KEY_MARKER not in (error.text or "")
    assert by_key[("full-rebuild.round1", "converge")].find("failure") is None
    assert float(converge.get("time") or 0) == pytest.approx(48.6)
    assert suites[0].get("failures") == "1" and suites[0].get("errors") == "1"
    assert suites[0].get("skipped") == "1" and suites[0].get("tests") == str(len(report.phases))
    props = {p.get("name"): p.get("value") for p in suites[0].iter("property")}
    assert props == {"run_id": report.run_id, "provider": "embedded",
                     "repo": "/srv/git/home-ops", "revision": REV, "verdict": "failed",
                     "time_to_ready_s": "84.200", "rto_target_s": "60.000",
                     "manual_steps": "2", "automated_by_drdrill": "1",
                     "recovery.time_to_rebuild_s": "84.200"}


# -- Allure ----------------------------------------------------------------------------------

def _result(results_dir: Path) -> dict:
    files = list(results_dir.glob("*-result.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_allure_result_steps_parameters_labels(tmp_path):
    report = make_report(phases=_phases(converge2="failed", verify2="skipped"),
                         objects=tuple(_objects(1) + _objects(2, all_ready=False)),
                         error="NotConverged: not converged at 4f6c2b1 within 300s")
    out = write_allure_results(report, tmp_path / "allure-results")
    result = _result(out)
    assert result["name"] == "full-rebuild on embedded, /srv/git/home-ops clusters/dev"
    assert result["testCaseId"] == result["historyId"]  # one test case per drill of a fleet
    assert result["status"] == "failed"
    assert result["statusDetails"]["message"].startswith("NotConverged: not converged")
    assert [s["name"] for s in result["steps"]] == [
        f"round {p.round} · {p.name}" if p.round else p.name for p in report.phases]
    steps = {s["name"]: s for s in result["steps"]}
    assert steps["round 2 · converge"]["status"] == "failed"
    assert steps["teardown"]["status"] == "broken"
    assert steps["round 2 · verify"]["status"] == "skipped"
    assert "steps" not in steps["round 2 · bootstrap"]
    sub1 = [s["name"] for s in steps["round 1 · converge"]["steps"]]
    assert len(sub1) == len(report.objects_in_round(1))
    assert sub1[0] == "GitRepository flux-system/flux-system ready after 38.4s"
    assert "Kustomization flux-system/apps ready after 84.2s" in sub1
    sub2 = {s["name"]: s for s in steps["round 2 · converge"]["steps"]}
    assert len(sub2) == len(report.objects_in_round(2))
    apps = sub2["Kustomization flux-system/apps not ready"]
    assert apps["status"] == "failed" and "infrastructure" in apps["statusDetails"]["message"]
    ready = sub2["Kustomization flux-system/infrastructure ready after 58.9s"]
    provision2 = steps["round 2 · provision"]
    assert ready["stop"] - provision2["start"] == 58_900
    assert result["start"] == 1714816800000
    assert result["stop"] == steps["teardown"]["stop"] > result["start"]
    params = {p["name"]: p["value"] for p in result["parameters"]}
    assert params == {"provider": "embedded", "repo": "/srv/git/home-ops", "revision": REV,
                      "cluster": "clusters/dev", "rto": "1m 00.0s", "time-to-rebuild": "1m 24.2s"}
    labels = {(lb["name"], lb["value"]) for lb in result["labels"]}
    assert {("suite", "full-rebuild"), ("epic", "disaster recovery"),
            ("feature", "full-rebuild"), ("severity", "critical"), ("framework", "drdrill"),
            ("tag", "embedded")} <= labels
    md = [a for a in result["attachments"] if a["name"] == "report.md"]
    assert len(md) == 1 and md[0]["type"] == "text/markdown"
    assert re.fullmatch(r"[0-9a-f-]{36}-attachment\.md", md[0]["source"])
    assert (out / md[0]["source"]).read_text().startswith("## drdrill:")


def test_allure_performance_metrics_are_ttr_phases_and_manual_steps(tmp_path):
    """Allure 3 reads `*-perf.json`: one series per drill, keyed by its history id."""
    import dataclasses

    report = make_report()
    out = write_allure_results(report, tmp_path / "allure-results")
    perf = list(out.glob("*-perf.json"))
    assert len(perf) == 1
    metrics = {m["key"].rsplit(".", 1)[-1] if ".phase." not in m["key"]
               else "phase." + m["key"].rsplit(".", 1)[-1]: m
               for m in json.loads(perf[0].read_text())}
    hid = _result(out)["historyId"]
    assert metrics["time_to_ready"]["key"] == f"drdrill.{hid}.time_to_ready"
    assert metrics["time_to_ready"]["value"] == report.time_to_ready_s
    assert metrics["time_to_ready"]["unit"] == "s" and metrics["time_to_ready"]["better"] == "lower"
    assert {k for k in metrics if k.startswith("phase.")} == {
        f"phase.{p.name}" for p in report.phases_in_round(2)}
    assert metrics["manual_steps"]["value"] == len(report.recovery_manual_steps)
    # The same repo from another checkout is the same series; another cluster is not.
    moved = write_allure_results(dataclasses.replace(report, repo="/elsewhere", repo_id="r"),
                                 tmp_path / "a")
    again = write_allure_results(dataclasses.replace(report, repo="/other", repo_id="r"),
                                 tmp_path / "b")
    assert _result(moved)["historyId"] == _result(again)["historyId"] != hid


def test_allure_history_id_is_stable_across_runs(tmp_path):
    a = _result(write_allure_results(make_report(), tmp_path / "a"))
    b = _result(write_allure_results(
        make_report(run_id="20240505-080000-ffff", revision="0" * 40, verdict="passed",
                    error=None), tmp_path / "b"))
    c = _result(write_allure_results(make_report(cluster="clusters/prod"), tmp_path / "c"))
    assert a["historyId"] == b["historyId"] != c["historyId"]
    assert a["uuid"] != b["uuid"]


def test_allure_rewrite_of_a_run_replaces_its_result(tmp_path):
    extra = tmp_path / "extra.log"
    extra.write_text("first\n")
    out = write_allure_results(make_report(), tmp_path / "r", attachments={"extra": extra})
    assert len(list(out.glob("*-attachment.*"))) == 2
    write_allure_results(make_report(), out)  # same run, written again after teardown
    assert len(list(out.glob("*-result.json"))) == 1
    assert len(list(out.glob("*-attachment.*"))) == 1  # the stale one is gone
    write_allure_results(make_report(run_id="another"), out)
    assert len(list(out.glob("*-result.json"))) == 2


def test_allure_categories_and_environment(tmp_path):
    out = write_allure_results(make_report(), tmp_path)
    categories = json.loads((out / "categories.json").read_text())
    assert categories == CATEGORIES
    assert {c["name"]: c["matchedStatuses"] for c in categories} == {
        "DR expectation failed": ["failed"], "Infrastructure broken": ["broken"]}
    dr = next(c for c in categories if c["name"] == "DR expectation failed")
    for exc in (RTOExceeded(84.2, 60.0), NotConverged("not converged at abc within 30s", {}),
                ObjectFailed("Kustomization/flux-system/apps", "BuildFailed", "boom"),
                RolloutFailed("workloads not rolled out:\n  x")):
        message = f"{type(exc).__name__}: {exc}"  # as harness.drill words report.error
        assert re.fullmatch(dr["messageRegex"], message), message
    assert not re.fullmatch(DR_FAILURE_REGEX, "ProviderError: etcd did not start")
    props = dict(line.split("=", 1) for line in
                 (out / "environment.properties").read_text().splitlines())
    assert props["provider"] == "embedded"
    assert props["version.kube-apiserver"] == "v1.31.1"
    assert props["flux.requeue_dependency"] == "2s"
    assert props["flux.flags.kustomize-controller"] == "--concurrent=6 --requeue-dependency=2s"


def test_allure_attachments_by_suffix_and_never_a_kubeconfig(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    log = src / "kustomize-controller.log"
    log.write_text(f"level=info msg=applied\nAuthorization: Bearer {BEARER}\n")
    png = src / "chart.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    kubeconfig = src / "admin.conf"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\nusers:\n- name: admin\n")
    key = src / "tls.key"
    key.write_text(PEM_KEY)
    out = write_allure_results(make_report(), tmp_path / "out", attachments={
        "controller log": log, "chart": png, "kubeconfig?": kubeconfig, "key": key,
        "missing": src / "nope.txt"})
    atts = {a["name"]: a for a in _result(out)["attachments"]}
    assert set(atts) == {"report.md", "controller log", "chart"}
    assert atts["controller log"]["type"] == "text/plain"
    assert atts["controller log"]["source"].endswith("-attachment.log")
    assert atts["chart"]["type"] == "image/png"
    assert (out / atts["chart"]["source"]).read_bytes() == png.read_bytes()
    copied = (out / atts["controller log"]["source"]).read_text()
    assert "level=info msg=applied" in copied and BEARER not in copied


# -- write_all -------------------------------------------------------------------------------

def _with_diagnostics(out: Path) -> None:
    d = out / "diagnostics" / "round2"
    (d / "logs").mkdir(parents=True)
    (d / "kustomizations.yaml").write_text("kind: Kustomization\nmetadata:\n  name: apps\n")
    (d / "logs" / "kustomize-controller.log").write_text(
        f"{PEM_KEY}\nclient-key-data: {CLIENT_KEY_DATA}\n{AGE_KEY}\n")


def test_write_all_writes_every_format(tmp_path):
    _with_diagnostics(tmp_path)
    written = write_all(make_report(), tmp_path)
    assert written == {"json": tmp_path / "report.json", "markdown": tmp_path / "report.md",
                       "html": tmp_path / "index.html",
                       "junit": tmp_path / "junit.xml", "allure": tmp_path / "allure-results"}
    assert all(p.exists() for p in written.values())
    result = _result(written["allure"])
    names = {a["name"] for a in result["attachments"]}
    assert names == {"report.md", "report.json", "diagnostics/round2/kustomizations",
                     "diagnostics/round2/logs/kustomize-controller"}


def test_nothing_written_contains_a_secret(tmp_path):
    report = make_report()
    # The planted secrets really are in the report, so this test can fail.
    assert all(s in json.dumps(dataclasses.asdict(report)) for s in SECRETS if s != BEARER) and (
        BEARER in (report.error or ""))
    _with_diagnostics(tmp_path)
    write_all(report, tmp_path)
    texts = _all_text(tmp_path, skip=tmp_path / "diagnostics")
    assert len(texts) >= 8  # json, md, xml, result, 4 attachments, env, categories
    for path, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret[:20]}... leaked into {path}"
    assert REDACTED in (tmp_path / "report.md").read_text()
    assert "client-key-data: [REDACTED]" in (tmp_path / "report.json").read_text()


def test_write_all_names_the_path_when_out_dir_is_under_a_file(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ReportError) as err:
        write_all(make_report(), blocker / "reports" / "run")
    assert f"cannot create report folder {blocker / 'reports' / 'run'}" in str(err.value)
    assert f"{blocker} is a file where a folder must be" in (err.value.fix or "")
    with pytest.raises(ReportError, match=re.escape(str(blocker))):
        write_json(make_report(), blocker)


def test_a_failing_writer_does_not_stop_the_others(tmp_path, monkeypatch):
    (tmp_path / "allure-results").write_text("a file where the folder should be")

    def bug(_report):
        raise KeyError("phases")

    monkeypatch.setattr(writers, "render_junit", bug)
    with pytest.raises(ReportError) as err:
        write_all(make_report(), tmp_path)
    message = str(err.value)
    assert "2 of 5 report writers failed" in message
    assert "junit: KeyError: 'phases'" in message
    assert f"allure: cannot create report folder {tmp_path / 'allure-results'}:" in message
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.md").exists()
    assert not (tmp_path / "junit.xml").exists()
    assert f"{tmp_path / 'allure-results'} is a file where a folder must be" in (
        err.value.fix or "")


# -- redact ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "kept", "gone"), [
    (f"key:\n{PEM_KEY}\nafter", "after", PEM_KEY_MARKER),
    ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----",
     REDACTED, "MIIBszCCAVmgAwIBAgIUQ"),
    ("log tail: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
     "log tail:", "b3BlbnNzaC1rZXktdjEAAAAA"),
    (f"    client-key-data: {CLIENT_KEY_DATA}\n", "client-key-data: [REDACTED]",
     CLIENT_KEY_DATA),
    (f'"client-certificate-data": "{CLIENT_KEY_DATA}"', '"client-certificate-data": "[REDACTED]"',
     CLIENT_KEY_DATA),
    (f"  token: {SA_TOKEN}", "token: [REDACTED]", SA_TOKEN),
    (f"SOPS_AGE_KEY={AGE_KEY}", "SOPS_AGE_KEY=[REDACTED]", AGE_KEY),
    (f"Authorization: Bearer {BEARER}", "Authorization: Bearer [REDACTED]", BEARER),
    ("https://drill:ghp_s3cr3tT0ken@github.com/o/r.git", "https://[REDACTED]@github.com/o/r.git",
     "ghp_s3cr3tT0ken"),
])
def test_redact_removes_secrets_and_keeps_context(text, kept, gone):
    out = redact(text)
    assert gone not in out and kept in out
    assert redact(out) == out


def test_redact_replaces_whole_pem_blocks():
    assert redact(PEM_KEY) == REDACTED
    assert redact(f"a\n{PEM_KEY}\nb\n{PEM_KEY}\nc") == f"a\n{REDACTED}\nb\n{REDACTED}\nc"


def test_redact_leaves_ordinary_text_alone():
    text = ("Kustomization/flux-system/apps failed (BuildFailed): kustomize build failed\n"
            "url ssh://git@github.com/o/r -> http://127.0.0.1:8081/r.git; secretRef: sops-age")
    assert redact(text) == text


def test_redact_data_redacts_nested_values_and_secret_keys():
    data = {"a": [f"token: {SA_TOKEN}", {"password": "hunter2", "n": 3}], "ok": "fine"}
    assert redact_data(data) == {"a": ["token: [REDACTED]", {"password": REDACTED, "n": 3}],
                                 "ok": "fine"}


def test_history_id_ignores_run_id_and_revision():
    a = allure_mod.history_id(make_report())
    assert a == allure_mod.history_id(make_report(run_id="x", revision="y", verdict="passed"))
    assert a != allure_mod.history_id(make_report(repo="/srv/git/other"))


def test_written_files_are_readable_by_others(tmp_path):
    path = write_json(make_report(), tmp_path)
    assert path.stat().st_mode & 0o044 == 0o044
