"""The benchmark's kind-mirror rows: a kind full rebuild of the kind-mirror fixture with a cold
mirror (empty: prefetch first, from a local stand-in for the registries) and with a warm one
(what the cold run left). `drdrill bench --sections kind-mirror`."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from harness.config import Config
from harness.mirror.standin import StandIn, busybox_archive, stand_in

FIXTURE = Path("tests", "data", "repos", "kind-mirror")
NAME = "kind-mirror"


def chart_archives(fixture: Path, work: Path) -> tuple[bytes, bytes]:
    """The fixture's `hello` chart, and the same chart as `greeter` 1.2.4 (its https repo's)."""
    from harness.mirror.artifacts import package_chart

    src = fixture / "charts" / "hello"
    greeter = work / "greeter"
    shutil.copytree(src, greeter, dirs_exist_ok=True)
    meta = yaml.safe_load((greeter / "Chart.yaml").read_text())
    meta.update(name="greeter", version="1.2.4")
    (greeter / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return package_chart(src), package_chart(greeter)


@contextmanager
def kind_mirror_upstream(config: Config, fixture: Path, work: Path) -> Iterator[StandIn]:
    """What the kind-mirror fixture names, served by a stand-in: its busybox-based images, the
    OCI chart `hello` and the https chart `greeter`."""
    work.mkdir(parents=True, exist_ok=True)
    busybox = busybox_archive(config, work / "busybox.tar")
    hello, greeter = chart_archives(fixture, work)
    with stand_in(config, work / "standin",
                  images={"ghcr.io/drdrill-fixtures/busybox:1.36": busybox,
                          "docker.io/drdrillfixtures/web:2.0": busybox},
                  oci_charts={"ghcr.io/drdrill-fixtures/charts": hello},
                  http_charts={"https://charts.drdrill-fixtures.example/stable": greeter},
                  hosts={"ghcr.io": "oci", "docker.io": "oci",
                         "charts.drdrill-fixtures.example": "http"}) as upstream:
        yield upstream


def _git_copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    env = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
           "PATH": "/usr/local/bin:/usr/bin:/bin"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "commit", "-qm", "kind-mirror fixture"]):
        subprocess.run(argv, cwd=dest, env=env, check=True, capture_output=True)
    return dest


def cold_warm(opts: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """Two kind full rebuilds of the fixture: cold (prefetch into an empty mirror, then the
    drill) and warm (the drill alone, the mirror as the cold run left it)."""
    from dataclasses import replace

    from harness.drill import DrillOptions, new_run_id, run_drill
    from harness.gitops.model import analyze
    from harness.mirror import open_mirror
    from harness.mirror.prefetch import prefetch
    from harness.mirror.wants import collect
    from harness.tools import ensure_tools

    top = Path(__file__).resolve().parents[2]
    work = Path(tempfile.mkdtemp(prefix="drdrill-bench-mirror-"))
    try:
        config = replace(Config.from_env(), mirror_dir=work / "mirror")
        repo = _git_copy(top / FIXTURE, work / "repo")
        rows = []
        with kind_mirror_upstream(config, top / FIXTURE, work / "upstream") as upstream:
            for label in ("cold", "warm"):
                prefetch_s = None
                if label == "cold":
                    say(f"{NAME}: prefetch into an empty mirror")
                    kustomize = ensure_tools(config, ["kustomize"])["kustomize"].path
                    wants = collect(analyze(repo, "clusters/dev", kustomize=kustomize,
                                            collect=True).rendered)
                    started = time.monotonic()
                    with open_mirror(config) as mirror:
                        got = prefetch(mirror.client(), wants.all(), upstream.upstreams,
                                       platforms=mirror.platforms)
                    prefetch_s = round(time.monotonic() - started, 2)
                    if not all(r.ok for r in got):
                        return {"error": "prefetch failed: " + "; ".join(
                            f"{r.ref}: {r.outcome}" for r in got if not r.ok)}
                say(f"{NAME}: kind full rebuild, {label} mirror")
                report, _ = run_drill(DrillOptions(
                    repo=repo, cluster="clusters/dev", provider="kind",
                    report_dir=work / f"report-{label}", run_id=new_run_id("bench"),
                    converge_timeout_s=opts.timeout_s, config=config))
                mirror_seen = report.egress.get("mirror") or {}
                rows.append({"mirror": label, "prefetch_s": prefetch_s,
                             "verdict": report.verdict,
                             "ttr_s": None if report.time_to_ready_s is None
                             else round(report.time_to_ready_s, 1),
                             "repositories_pulled": mirror_seen.get("repositories_pulled"),
                             "pulled_mib": round(int(mirror_seen.get("pulled_bytes") or 0)
                                                 / 2**20, 1),
                             "pull_span_s": mirror_seen.get("pull_span_s"),
                             "missing": list(mirror_seen.get("missing") or []),
                             "error": report.error})
        return {"rows": rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(result: Any, cores: int) -> Sequence[str]:
    """The section's Markdown lines (after the built-in sections)."""
    lines = [f"**{NAME}: kind rebuild, cold vs warm registry mirror** (the kind-mirror "
             "fixture, 1 node; cold: prefetch from a local stand-in for ghcr.io/docker.io into "
             "an empty mirror, then the drill; warm: the drill alone; nodes pull every image "
             "and Flux every chart from the mirror in both)", ""]
    if not isinstance(result, dict) or result.get("error"):
        why = result.get("error") if isinstance(result, dict) else result
        return [*lines, f"not measured: {why}", ""]
    lines += ["| mirror | prefetch | TTR (rebuild) | verdict | repositories pulled | pulled | "
              "pull span |", "|---|---|---|---|---|---|---|"]
    for r in result.get("rows") or []:
        def s(v: Any, unit: str = " s") -> str:
            return "-" if v is None else f"{v}{unit}"
        lines.append(f"| {r['mirror']} | {s(r.get('prefetch_s'))} | {s(r.get('ttr_s'))} | "
                     f"{r.get('verdict')} | {s(r.get('repositories_pulled'), '')} | "
                     f"{s(r.get('pulled_mib'), ' MiB')} | {s(r.get('pull_span_s'))} |")
    return [*lines, ""]


def register() -> None:
    """Called while harness.bench.sections loads (so before harness.bench.run exists, which
    register_section would import for its name check: no built-in section has this name)."""
    from harness.bench.sections import REGISTERED, Section

    REGISTERED.setdefault(NAME, Section(NAME, cold_warm, render))
