"""The GitHub Actions workflow `drdrill init` writes: nightly and on demand, a matrix of cluster
x provider on GitHub's own runners, the pinned tools cached by their pins, manual inputs from
secrets, reports as artifacts and job summaries, and a fan-in job for the fleet page and Allure.
"""

from __future__ import annotations

import json

from harness.ci.files import with_header
from harness.ci.plan import Plan

PATH = ".github/workflows/drdrill.yaml"
PYTHON = "3.12"
GO = "1.26.x"
"""The fallback that builds a pinned tool from the Go module proxy when no download serves it."""
NODE = "22"
INPUTS_DIR = "$RUNNER_TEMP/drdrill-inputs"
HISTORY_RUNS = 400
"""Run folders the fan-in job keeps in its history cache (newest first)."""
PRUNE = ("find drdrill-history/runs -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\\n' | "
         f"sort -rn | tail -n +{HISTORY_RUNS + 1} | cut -d' ' -f2- | xargs -r -d '\\n' rm -rf")


def q(value: object) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(str(value))


def render(plan: Plan, *, install: str, version: str) -> str:
    """The workflow file, header and all; the same plan always gives the same bytes."""
    header = [f"# drdrill {version}: nightly disaster-recovery drills of {plan.repo}.", "#"]
    if plan.inputs:
        header += ["# Manual inputs: one repository secret each, holding the input's whole "
                   "manifest (YAML).", "# Add them with `gh secret set NAME < manifest.yaml`:"]
        width = max(len(i.secret) for i in plan.inputs)
        header += [f"#   {i.secret:<{width}}  {i.label}" + (f" ({i.why})" if i.why else "")
                   for i in plan.inputs]
    else:
        header.append("# Manual inputs: none (preflight found no Secret or ConfigMap outside Git).")
    header += [f"# {note}" for note in plan.notes]
    return with_header(header, _body(plan, install))


def _body(plan: Plan, install: str) -> str:
    cells = []
    for c in plan.cells:
        cells += [f"          - cluster: {q(c.cluster)}",
                  f"            provider: {q(c.provider)}",
                  f"            slug: {q(c.slug)}",
                  f"            inputs: {q(' '.join(c.inputs))}"]
    secrets_env = [f"          {i.secret}: ${{{{ secrets.{i.secret} }}}}" for i in plan.inputs]
    rto = f" --rto {plan.rto_s:g}" if plan.rto_s else ""
    lines = [
        "name: drdrill",
        "",
        "on:",
        "  schedule:",
        f"    - cron: {q(plan.schedule)}",
        "  workflow_dispatch: {}",
        "",
        "permissions:",
        "  contents: read",
        "",
        "concurrency:",
        "  group: drdrill-${{ github.ref }}",
        "  cancel-in-progress: false",
        "",
        "env:",
        f"  DRDRILL_INSTALL: {q(install)}",
        "  # Fetch the pinned tools from their official releases and images (checksums checked)",
        "  # before building any from source.",
        "  DRDRILL_ALLOW_DOWNLOAD: \"1\"",
        "  PYTHONUNBUFFERED: \"1\"",
        "",
        "jobs:",
        "  drill:",
        "    name: drill ${{ matrix.cluster }} on ${{ matrix.provider }}",
        "    runs-on: ubuntu-24.04",
        "    timeout-minutes: 120",
        "    strategy:",
        "      fail-fast: false",
        "      matrix:",
        "        include:",
        *cells,
        "    steps:",
        "      - uses: actions/checkout@v4",
        "        with:",
        "          persist-credentials: false",
        "      - uses: actions/setup-python@v5",
        "        with:",
        f"          python-version: {q(PYTHON)}",
        "      # Go builds a pinned tool from the Go module proxy when no download serves it.",
        "      - uses: actions/setup-go@v5",
        "        with:",
        f"          go-version: {q(GO)}",
        "          cache: false",
        "      - name: Install drdrill",
        "        run: python -m pip install \"$DRDRILL_INSTALL\"",
        "      - name: Pins",
        "        id: pins",
        "        run: echo \"key=$(drdrill tools pins)\" >> \"$GITHUB_OUTPUT\"",
        "      - name: Cache the pinned tools",
        "        uses: actions/cache@v4",
        "        with:",
        "          path: |",
        "            ~/.cache/drdrill",
        "            !~/.cache/drdrill/runs",
        "          key: drdrill-${{ runner.os }}-${{ steps.pins.outputs.key }}",
        "      - name: Pinned tools",
        "        run: drdrill tools ensure",
        "      - name: Manual inputs from secrets",
        "        env:",
        "          INPUT_NAMES: ${{ matrix.inputs }}",
        *secrets_env,
        "        run: |",
        "          umask 077",
        f"          dir=\"{INPUTS_DIR}\"",
        "          mkdir -m 0700 \"$dir\"",
        "          for name in $INPUT_NAMES; do",
        "            if [ -z \"${!name:-}\" ]; then",
        "              echo \"::error::repository secret $name is not set (the list is at the top "
        f"of {PATH})\"",
        "              exit 1",
        "            fi",
        "            printf '%s\\n' \"${!name}\" > \"$dir/$name.yaml\"",
        "          done",
        "      - name: Drill",
        "        env:",
        "          CLUSTER: ${{ matrix.cluster }}",
        "          PROVIDER: ${{ matrix.provider }}",
        "          INPUT_NAMES: ${{ matrix.inputs }}",
        "        run: |",
        "          inputs=()",
        f"          if [ -n \"$INPUT_NAMES\" ]; then inputs=(--inputs \"{INPUTS_DIR}\"); fi",
        f"          drdrill drill --repo . --cluster \"$CLUSTER\" --provider \"$PROVIDER\" "
        f"--scenario {plan.scenario}{rto} \"${{inputs[@]}}\"",
        "      - name: Job summary",
        "        if: always()",
        "        run: cat reports/*/report.md >> \"$GITHUB_STEP_SUMMARY\" || "
        "echo \"drdrill wrote no report\" >> \"$GITHUB_STEP_SUMMARY\"",
        "      - name: Upload the report",
        "        id: upload",
        "        if: always()",
        "        uses: actions/upload-artifact@v4",
        "        with:",
        "          name: drdrill-${{ matrix.slug }}",
        "          path: reports/",
        "          if-no-files-found: warn",
        "          retention-days: 30",
        "      - name: Link the full report",
        "        if: always() && steps.upload.outputs.artifact-url != ''",
        "        env:",
        "          URL: ${{ steps.upload.outputs.artifact-url }}",
        "        run: |",
        "          echo \"Full report (index.html, report.json, diagnostics): $URL\" >> "
        "\"$GITHUB_STEP_SUMMARY\"",
        "      - name: Remove the inputs",
        "        if: always()",
        f"        run: rm -rf \"{INPUTS_DIR}\"",
        "",
        "  fleet:",
        "    name: fleet page and Allure",
        "    needs: drill",
        "    if: always()",
        "    runs-on: ubuntu-24.04",
        "    timeout-minutes: 30",
        "    steps:",
        "      - uses: actions/setup-python@v5",
        "        with:",
        f"          python-version: {q(PYTHON)}",
        "      - uses: actions/setup-node@v4",
        "        with:",
        f"          node-version: {q(NODE)}",
        "      - name: Install drdrill",
        "        run: python -m pip install \"$DRDRILL_INSTALL\"",
        "      - uses: actions/download-artifact@v4",
        "        with:",
        "          pattern: drdrill-*",
        "          path: cells",
        "          merge-multiple: true",
        "      - name: Restore the history",
        "        uses: actions/cache/restore@v4",
        "        with:",
        "          path: drdrill-history",
        "          key: drdrill-history-${{ github.run_id }}",
        "          restore-keys: drdrill-history-",
        "      - name: Fleet page",
        "        id: merge",
        "        run: |",
        "          mkdir -p cells drdrill-history/runs",
        "          cp -R cells/. drdrill-history/runs/",
        f"          {PRUNE}",
        "          rc=0",
        "          drdrill report merge drdrill-history/runs --out fleet || rc=$?",
        "          echo \"rc=$rc\" >> \"$GITHUB_OUTPUT\"",
        "          cat fleet/fleet.md >> \"$GITHUB_STEP_SUMMARY\" || true",
        "      - name: Allure 3 report with history",
        "        run: drdrill report allure cells --history drdrill-history/allure-history.jsonl "
        "--out fleet/allure",
        "      - name: Save the history",
        "        if: always()",
        "        uses: actions/cache/save@v4",
        "        with:",
        "          path: drdrill-history",
        "          key: drdrill-history-${{ github.run_id }}",
        "      - name: Upload the fleet page",
        "        if: always()",
        "        uses: actions/upload-artifact@v4",
        "        with:",
        "          name: drdrill-fleet",
        "          path: fleet/",
        "          retention-days: 30",
        "      - name: Fail on a regression",
        "        if: steps.merge.outputs.rc != '0'",
        "        env:",
        "          RC: ${{ steps.merge.outputs.rc }}",
        "        run: |",
        "          echo \"::error::drdrill report merge exited $RC (1: a time-to-ready "
        "regression)\"",
        "          exit \"$RC\"",
    ]
    return "\n".join(lines) + "\n"
