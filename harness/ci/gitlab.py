"""The `.gitlab-ci.yml` `drdrill init --ci gitlab` writes: the same drill matrix, inputs from
File-type CI/CD variables, reports as artifacts (JUnit shown in the merge request), and a fan-in
job for the fleet page and Allure. GitLab schedules live in its UI (Build > Pipeline schedules).
"""

from __future__ import annotations

from harness.ci.files import with_header
from harness.ci.github import PRUNE, PYTHON, q
from harness.ci.plan import Plan

PATH = ".gitlab-ci.yml"
INPUTS_DIR = "$CI_BUILDS_DIR/drdrill-inputs-$CI_JOB_ID"


def render(plan: Plan, *, install: str, version: str, pins: str) -> str:
    """The pipeline file; the tools cache is keyed by the pins this drdrill has (`pins`): run
    `drdrill init` again after upgrading drdrill."""
    header = [f"# drdrill {version}: nightly disaster-recovery drills of {plan.repo}.", "#",
              "# Runs on pipelines from a schedule (Build > Pipeline schedules: add one, e.g. "
              f"{plan.schedule!r})", "# and on pipelines started by hand (Build > Pipelines > "
              "Run pipeline).", "#"]
    if plan.inputs:
        header += ["# Manual inputs: one CI/CD variable of type File each, holding the input's "
                   "whole manifest (YAML):"]
        width = max(len(i.secret) for i in plan.inputs)
        header += [f"#   {i.secret:<{width}}  {i.label}" + (f" ({i.why})" if i.why else "")
                   for i in plan.inputs]
    else:
        header.append("# Manual inputs: none (preflight found no Secret or ConfigMap outside Git).")
    if any(c.provider in ("kind", "k3d") for c in plan.cells):
        header.append("# kind/k3d cells need a runner with a Docker engine (a shell executor "
                      "with Docker, or privileged docker:dind).")
    header += [f"# {note}" for note in plan.notes]
    return with_header(header, _body(plan, install, pins))


def _body(plan: Plan, install: str, pins: str) -> str:
    matrix = []
    for c in plan.cells:
        matrix += [f"      - CLUSTER: {q(c.cluster)}", f"        PROVIDER: {q(c.provider)}",
                   f"        INPUT_NAMES: {q(' '.join(c.inputs))}"]
    rto = f" --rto {plan.rto_s:g}" if plan.rto_s else ""
    lines = [
        "stages: [drill, fleet]",
        "",
        "workflow:",
        "  rules:",
        "    - if: $CI_PIPELINE_SOURCE == \"schedule\" || $CI_PIPELINE_SOURCE == \"web\"",
        "",
        "variables:",
        f"  DRDRILL_INSTALL: {q(install)}",
        "  DRDRILL_CACHE_DIR: \"$CI_PROJECT_DIR/.drdrill-cache\"",
        "  DRDRILL_ALLOW_DOWNLOAD: \"1\"",
        "  PYTHONUNBUFFERED: \"1\"",
        "",
        "drdrill:",
        "  stage: drill",
        f"  image: python:{PYTHON}-bookworm",
        "  timeout: 2h",
        "  parallel:",
        "    matrix:",
        *matrix,
        "  cache:",
        f"    key: drdrill-tools-{pins}",
        "    paths: [.drdrill-cache/tools/]",
        "  before_script:",
        "    - python -m pip install \"$DRDRILL_INSTALL\"",
        "    - drdrill tools ensure",
        "    - |",
        "      umask 077",
        f"      dir=\"{INPUTS_DIR}\"",
        "      mkdir -m 0700 \"$dir\"",
        "      for name in $INPUT_NAMES; do",
        "        file=$(printenv \"$name\" || true)",
        "        if [ -z \"$file\" ] || [ ! -f \"$file\" ]; then",
        "          echo \"CI/CD variable $name (type File) is not set; the list is at the top of "
        f"{PATH}\"; exit 1",
        "        fi",
        "        cp \"$file\" \"$dir/$name.yaml\"",
        "      done",
        "  script:",
        "    - |",
        "      inputs=\"\"",
        f"      if [ -n \"$INPUT_NAMES\" ]; then inputs=\"--inputs {INPUTS_DIR}\"; fi",
        f"      drdrill drill --repo . --cluster \"$CLUSTER\" --provider \"$PROVIDER\" "
        f"--scenario {plan.scenario}{rto} $inputs",
        "  after_script:",
        f"    - rm -rf \"{INPUTS_DIR}\"",
        "    - cat reports/*/report.md || true",
        "  artifacts:",
        "    when: always",
        "    expire_in: 30 days",
        "    paths: [reports/]",
        "    reports:",
        "      junit: reports/*/junit.xml",
        "",
        "drdrill-fleet:",
        "  stage: fleet",
        f"  image: python:{PYTHON}-bookworm",
        "  when: always",
        "  needs:",
        "    - job: drdrill",
        "      artifacts: true",
        "  cache:",
        "    key: drdrill-history",
        "    paths: [drdrill-history/]",
        "  script:",
        "    - python -m pip install \"$DRDRILL_INSTALL\"",
        "    - apt-get update -qq && apt-get install -y -qq nodejs npm > /dev/null",
        "    - mkdir -p reports drdrill-history/runs && cp -R reports/. drdrill-history/runs/",
        f"    - {PRUNE}",
        "    - drdrill report allure reports --history drdrill-history/allure-history.jsonl "
        "--out fleet/allure",
        "    - drdrill report merge drdrill-history/runs --out fleet",
        "  artifacts:",
        "    when: always",
        "    expire_in: 30 days",
        "    paths: [fleet/]",
    ]
    return "\n".join(lines) + "\n"
