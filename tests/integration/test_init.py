"""`drdrill init` on real repo layouts: the workflows pass the pinned actionlint, inputs come from
secrets into a 0700 folder without being echoed, and init never overwrites a file it did not
write. Needs the pinned kustomize and actionlint (built from the Go module proxy if missing)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.ci import github
from harness.ci.plan import secret_name
from harness.cli import main
from harness.config import Config
from harness.tools import ensure_tools

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def actionlint() -> Path:
    return ensure_tools(Config.from_env(), ["actionlint"])["actionlint"].path


def _init(repo: Path, *args: str) -> int:
    return main(["init", "--repo", str(repo), *args])


def _lint(actionlint: Path, workflow: Path) -> None:
    out = subprocess.run([str(actionlint), "-no-color", str(workflow)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def _workflow(repo: Path) -> dict:
    return yaml.safe_load((repo / github.PATH).read_text())


@pytest.mark.parametrize(("fixture", "cluster_path", "cells", "secrets"), [
    ("sample", "clusters/homelab", {("clusters/homelab", "embedded")},
     {"DRDRILL_SECRET_FLUX_SYSTEM_CLUSTER_SECRETS", "DRDRILL_SECRET_FLUX_SYSTEM_SOPS_AGE"}),
    # flux2-kustomize-helm-example / d2-fleet: two clusters, one with an embedded limit.
    ("fleet-two-clusters", None, {("clusters/staging", "embedded"),
                                  ("clusters/production", "kind")},
     {"DRDRILL_SECRET_FLUX_SYSTEM_PROD_VARS"}),
    # home-ops layouts: a FluxInstance sync, notification kinds, stores' secret-zero.
    ("secret-zero", "clusters/main", {("clusters/main", "kind")},
     {"DRDRILL_SECRET_EXTERNAL_SECRETS_ONEPASSWORD_CONNECT_TOKEN",
      "DRDRILL_SECRET_APPS_VAULT_TOKEN", "DRDRILL_SECRET_APPS_CHAT_WEBHOOK",
      "DRDRILL_SECRET_FLUX_SYSTEM_SOPS_AGE"}),
    ("home-ops", "kubernetes/flux/cluster", {("kubernetes/flux/cluster", "embedded")},
     {"DRDRILL_SECRET_FLUX_SYSTEM_CLUSTER_SECRETS"}),
])
def test_init_writes_a_workflow_actionlint_passes(fixture, cluster_path, cells, secrets,
                                                  sample_repo, fixture_repo, actionlint, capsys):
    repo = sample_repo if fixture == "sample" else fixture_repo(fixture)
    args = ["--cluster", cluster_path] if cluster_path else []
    assert _init(repo, *args, "--rto", "300") == 0
    _lint(actionlint, repo / github.PATH)
    wf = _workflow(repo)
    include = wf["jobs"]["drill"]["strategy"]["matrix"]["include"]
    assert {(c["cluster"], c["provider"]) for c in include} == cells
    assert set(" ".join(c["inputs"] for c in include).split()) == secrets
    env = next(s["env"] for s in wf["jobs"]["drill"]["steps"]
               if s.get("name") == "Manual inputs from secrets")
    assert {k for k in env if k.startswith("DRDRILL_")} == secrets
    assert all(env[k] == f"${{{{ secrets.{k} }}}}" for k in secrets)
    assert wf[True] == {"schedule": [{"cron": "17 3 * * *"}], "workflow_dispatch": {}}  # `on`
    drill = next(s["run"] for s in wf["jobs"]["drill"]["steps"] if s.get("name") == "Drill")
    assert "--rto 300" in drill and "--scenario full-rebuild" in drill
    assert wf["jobs"]["fleet"]["needs"] == "drill"
    printed = capsys.readouterr().out
    assert all(f"add repository secret {s}" in printed for s in secrets)


def test_init_is_idempotent_and_never_overwrites_what_it_did_not_write(sample_repo, capsys):
    assert _init(sample_repo) == 0
    first = (sample_repo / github.PATH).read_bytes()
    assert _init(sample_repo) == 0
    assert (sample_repo / github.PATH).read_bytes() == first
    assert "unchanged:" in capsys.readouterr().out
    # --dry-run prints the same file and writes nothing.
    (sample_repo / github.PATH).unlink()
    assert _init(sample_repo, "--dry-run") == 0
    assert capsys.readouterr().out.encode() == first
    assert not (sample_repo / github.PATH).exists()
    # Edited by hand: refused (exit 2), the edit kept.
    _init(sample_repo)
    edited = first + b"# my own step\n"
    (sample_repo / github.PATH).write_bytes(edited)
    assert _init(sample_repo) == 2
    assert (sample_repo / github.PATH).read_bytes() == edited
    assert "edited since" in capsys.readouterr().err
    # Someone else's workflow of that name: refused, also for --dry-run.
    (sample_repo / github.PATH).write_text("name: mine\non: push\njobs: {}\n")
    assert _init(sample_repo) == 2 and _init(sample_repo, "--dry-run") == 2
    assert (sample_repo / github.PATH).read_text().startswith("name: mine")
    assert "not written by drdrill init" in capsys.readouterr().err


def test_the_inputs_step_writes_0700_and_echoes_no_secret(sample_repo, tmp_path):
    """Run the workflow's own inputs script with bash, as the runner would."""
    _init(sample_repo)
    step = next(s for s in _workflow(sample_repo)["jobs"]["drill"]["steps"]
                if s.get("name") == "Manual inputs from secrets")
    names = ["DRDRILL_SECRET_FLUX_SYSTEM_CLUSTER_SECRETS", "DRDRILL_SECRET_FLUX_SYSTEM_SOPS_AGE"]
    values = {n: f"apiVersion: v1\nkind: Secret\nstringData:\n  key: s3cr3t-{i}-value\n"
              for i, n in enumerate(names)}
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env = {"PATH": os.environ["PATH"], "RUNNER_TEMP": str(runner_temp),
           "INPUT_NAMES": " ".join(names), **values}
    out = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    folder = runner_temp / "drdrill-inputs"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name, value in values.items():
        assert (folder / f"{name}.yaml").read_text() == value + "\n"
        assert stat.S_IMODE((folder / f"{name}.yaml").stat().st_mode) == 0o600
    assert "s3cr3t" not in out.stdout + out.stderr
    # A secret that is not set stops the job, naming it, still echoing no value.
    del env[names[1]]
    for written in folder.iterdir():
        written.unlink()
    folder.rmdir()
    out = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 1
    assert f"::error::repository secret {names[1]} is not set" in out.stdout
    assert "s3cr3t" not in out.stdout + out.stderr


def test_gitlab_pipeline_has_the_same_matrix(fixture_repo, capsys):
    repo = fixture_repo("fleet-two-clusters")
    assert _init(repo, "--ci", "gitlab") == 0
    pipeline = yaml.safe_load((repo / ".gitlab-ci.yml").read_text())
    matrix = pipeline["drdrill"]["parallel"]["matrix"]
    assert {(m["CLUSTER"], m["PROVIDER"], m["INPUT_NAMES"]) for m in matrix} == {
        ("clusters/production", "kind", "DRDRILL_SECRET_FLUX_SYSTEM_PROD_VARS"),
        ("clusters/staging", "embedded", "")}
    assert pipeline["drdrill"]["cache"]["key"].startswith("drdrill-tools-")
    assert pipeline["drdrill"]["artifacts"]["reports"]["junit"] == "reports/*/junit.xml"
    assert pipeline["drdrill-fleet"]["needs"] == [{"job": "drdrill", "artifacts": True}]
    assert "CI/CD variable (type File) DRDRILL_SECRET_FLUX_SYSTEM_PROD_VARS" in \
        capsys.readouterr().out


def test_secret_names_are_valid_ci_names():
    assert secret_name("Secret", "flux-system", "sops-age") == "DRDRILL_SECRET_FLUX_SYSTEM_SOPS_AGE"
    assert secret_name("ConfigMap", "a.b", "x--y") == "DRDRILL_CONFIGMAP_A_B_X_Y"


@pytest.mark.slow
def test_the_workflows_own_steps_drill_a_cell_and_merge_the_fleet(fixture_repo, tmp_path):
    """The matrix cell's Drill step and the fan-in's Fleet page step, run with bash as the runner
    would: the same entry point (`drdrill` on PATH), reports merged into one fleet page."""
    import sys

    repo = fixture_repo("fleet-two-clusters")
    assert _init(repo, "--rto", "300") == 0
    jobs = _workflow(repo)["jobs"]
    cell = next(c for c in jobs["drill"]["strategy"]["matrix"]["include"]
                if c["provider"] == "embedded")
    drill = next(s for s in jobs["drill"]["steps"] if s.get("name") == "Drill")
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "RUNNER_TEMP": str(tmp_path), "GITHUB_STEP_SUMMARY": str(summary),
           "GITHUB_OUTPUT": str(output), "GITHUB_ACTIONS": "true",
           "CLUSTER": cell["cluster"], "PROVIDER": cell["provider"],
           "INPUT_NAMES": cell["inputs"]}
    out = subprocess.run(["bash", "-e", "-c", drill["run"]], cwd=repo, env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "::group::phase converge" in out.stderr and "ready: Kustomization/flux-system/apps" \
        in out.stderr
    reports = list((repo / "reports").glob("*/report.json"))
    assert len(reports) == 1
    # The fan-in job: artifacts land in cells/, the step merges them with the history.
    cells = tmp_path / "fanin" / "cells"
    shutil.copytree(repo / "reports", cells)
    fleet_step = next(s for s in jobs["fleet"]["steps"] if s.get("name") == "Fleet page")
    out = subprocess.run(["bash", "-e", "-c", fleet_step["run"]], cwd=cells.parent, env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "rc=0" in output.read_text()
    page = json.loads((cells.parent / "fleet" / "fleet.json").read_text())
    assert [(r["cluster"], r["provider"], r["status"]) for r in page["rows"]] == [
        ("clusters/staging", "embedded", "passed")]
    assert "## drdrill fleet" in summary.read_text()
