"""pytest plugin (entry point `pytest11`): drill options, fixtures, Allure steps per phase.

    pytest scenarios/ --provider embedded --repo PATH --keep-cluster on-failure

Fixtures: `drill_options` (what the command line asked for), `drill_recorder` (a Drill whose
phases become Allure steps), `run_scenario` (runs a scenario and returns its report),
`embedded_cluster` and `flux_runtime` (a real embedded cluster, with Flux, for a test).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.config import Config
from harness.core.recorder import Drill
from harness.report.model import DrillReport, PhaseRecord

REPO_TOP = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("drdrill", "disaster-recovery drills")
    group.addoption("--provider", default="embedded", help="cluster provider (default embedded)")
    group.addoption("--repo", type=Path, default=None,
                    help="Flux Git repository to drill (default: the drdrill checkout)")
    group.addoption("--cluster", default=None, help="repo-relative cluster folder")
    group.addoption("--inputs", type=Path, default=None,
                    help="folder of manual-input manifests (default: scenarios/inputs/<cluster>)")
    group.addoption("--keep-cluster", choices=("never", "on-failure", "always"),
                    default="never")
    group.addoption("--drill-report-dir", type=Path, default=None,
                    help="parent folder of the drill reports (default reports/)")
    group.addoption("--rto", type=float, default=None, help="RTO in seconds")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "drill: a full drill scenario (scenarios/)")


@pytest.fixture(scope="session")
def drill_options(pytestconfig: pytest.Config) -> Any:
    """DrillOptions from the command line (a fresh run id is set per scenario)."""
    from harness.drill import DrillOptions

    repo = pytestconfig.getoption("--repo") or REPO_TOP
    cluster = pytestconfig.getoption("--cluster")
    inputs = pytestconfig.getoption("--inputs")
    if inputs is None and repo == REPO_TOP:
        name = Path(cluster or "clusters/homelab").name
        candidate = REPO_TOP / "scenarios" / "inputs" / name
        inputs = candidate if candidate.is_dir() else None
    return DrillOptions(repo=Path(repo), cluster=cluster, inputs=inputs,
                        provider=pytestconfig.getoption("--provider"),
                        keep_cluster=pytestconfig.getoption("--keep-cluster"),
                        rto_s=pytestconfig.getoption("--rto"), config=Config.from_env())


@pytest.fixture
def drill_recorder(request: pytest.FixtureRequest) -> Iterator[Drill]:
    """A Drill whose phases are Allure steps (when allure-pytest is active)."""
    from harness.drill import new_run_id

    drill = Drill(new_run_id())
    drill.listeners.append(_AllureSteps().on_phase)
    yield drill


def _session_dir(config: pytest.Config) -> Path:
    """One folder per pytest session, shared by every xdist worker (same testrunuid), so the
    reports of a parallel run form one tree: reports/session-<stamp>-<uid>/<drill-run-id>/."""
    base = Path(config.getoption("--drill-report-dir") or REPO_TOP / "reports")
    uid = getattr(config, "workerinput", {}).get("drdrill_uid") or getattr(
        config, "_drdrill_uid", None)
    if uid is None:
        uid = config._drdrill_uid = os.urandom(4).hex()  # type: ignore[attr-defined]
    stamp = getattr(config, "workerinput", {}).get("drdrill_stamp") or getattr(
        config, "_drdrill_stamp", None)
    if stamp is None:
        stamp = config._drdrill_stamp = time.strftime(  # type: ignore[attr-defined]
            "%Y%m%dT%H%M%SZ", time.gmtime())
    return base / f"session-{stamp}-{uid[:8]}"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller -> workers: the session's stamp and id, so all name the same folder."""
    _session_dir(node.config)
    node.workerinput["drdrill_stamp"] = node.config._drdrill_stamp
    node.workerinput["drdrill_uid"] = node.config._drdrill_uid


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On the controller (or a plain run): index every drill report of this session."""
    if hasattr(session.config, "workerinput") or not hasattr(session.config, "_drdrill_stamp"):
        return
    folder = _session_dir(session.config)
    drills = []
    for path in sorted(folder.glob("*/report.json")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            drills.append({k: data.get(k) for k in ("run_id", "scenario", "provider", "repo",
                                                    "cluster", "verdict", "time_to_ready_s")}
                          | {"report": str(path.relative_to(folder))})
    if drills:
        (folder / "session.json").write_text(json.dumps({"drills": drills}, indent=2))


@pytest.fixture
def run_scenario(drill_options: Any, drill_recorder: Drill, pytestconfig: pytest.Config,
                 ) -> Callable[..., DrillReport]:
    """`run_scenario("full-rebuild", **overrides)` runs a drill and returns its report.

    An interrupt (^C, SIGTERM, SIGHUP) ends the drill *and the session*, after the drill's
    teardown and report: the next scenario must not start on a machine being shut down."""
    from harness.drill import open_run
    from harness.errors import DrillInterrupted

    def run(scenario: str = "full-rebuild", **overrides: Any) -> DrillReport:
        folder = _session_dir(pytestconfig)
        opts = replace(drill_options, scenario=scenario, run_id=drill_recorder.run_id,
                       report_dir=folder / drill_recorder.run_id, **overrides)
        with open_run(opts, drill=drill_recorder) as drill_run:
            drill_run.execute()
        if drill_run.interrupted_by is not None:
            pytest.exit(f"drill {drill_recorder.run_id} interrupted by "
                        f"{drill_run.interrupted_by}; its report is in "
                        f"{drill_run.plan.report_dir}",
                        returncode=DrillInterrupted(drill_run.interrupted_by).exit_code)
        if drill_run.report_error is not None:
            raise drill_run.report_error
        assert drill_run.report is not None
        _attach_report(drill_run.report, drill_run.plan.report_dir)
        return drill_run.report

    return run


@pytest.fixture
def embedded_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real embedded cluster (etcd, kube-apiserver, kcm, scheduler, kwok), deleted after."""
    from harness.drill import new_run_id
    from harness.providers import ProviderContext
    from harness.providers.embedded import EmbeddedProvider
    from harness.tools import EMBEDDED_TOOLS, FLUX_TOOLS, ensure_tools

    config = Config.from_env()
    tools = ensure_tools(config, (*EMBEDDED_TOOLS, *FLUX_TOOLS, "kustomize"))
    run_id = new_run_id("test")
    ctx = ProviderContext(run_id=run_id, cluster_name="t", workdir=tmp_path_factory.mktemp(
        "cluster"), config=config, tools=tools)
    provider = EmbeddedProvider(ctx)
    with provider:
        yield provider


@pytest.fixture
def flux_runtime(embedded_cluster: Any) -> Iterator[Any]:
    """Flux (pinned CRDs + source/kustomize controllers) installed on `embedded_cluster`."""
    from harness.flux import FluxRuntime, FluxSettings
    from harness.kube import api_client
    from harness.tools import flux_crds

    api = api_client(embedded_cluster.kubeconfig)
    config = embedded_cluster.ctx.config
    runtime = FluxRuntime(embedded_cluster, api, embedded_cluster.ctx.tools, flux_crds(config),
                          FluxSettings(profile=config.flux_profile))
    runtime.install()
    try:
        yield runtime
    finally:
        api.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None],
                              ) -> Generator[None, Any, None]:
    """On failure, attach the embedded cluster's component logs (collected before teardown)."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    cluster = getattr(item, "funcargs", {}).get("embedded_cluster")
    if cluster is None:
        return
    with contextlib.suppress(Exception):
        from harness.procs import log_tail
        from harness.report.redact import redact

        for log in sorted(cluster.supervisor.log_dir.glob("*.log")):
            report.sections.append((f"log tail: {log.name}", redact(log_tail(log, 40))))


class _AllureSteps:
    """Turns phase start/end events into Allure steps, if allure-pytest is recording."""

    def __init__(self) -> None:
        self._open: list[Any] = []

    def on_phase(self, event: str, record: PhaseRecord | None) -> None:
        try:
            import allure
        except ImportError:  # pragma: no cover - allure-pytest is a dependency
            return
        kind, _, name = event.partition(":")
        if kind == "start":
            step = allure.step(name)
            step.__enter__()
            self._open.append(step)
        elif self._open:
            step = self._open.pop()
            if record is not None:
                allure.attach(json.dumps(record.__dict__, indent=2, default=str),
                              name=f"{record.name} (round {record.round})",
                              attachment_type=allure.attachment_type.JSON)
            failed = record is not None and record.outcome in ("failed", "broken")
            error = AssertionError(record.error) if failed and record is not None else None
            step.__exit__(type(error) if error else None, error, None)


def _attach_report(report: DrillReport, report_dir: Path) -> None:
    try:
        import allure
    except ImportError:  # pragma: no cover
        return
    md = report_dir / "report.md"
    if md.exists():
        allure.attach.file(str(md), name="report.md", attachment_type="text/markdown",
                           extension="md")
    allure.dynamic.parameter("provider", report.provider)
    allure.dynamic.parameter("revision", report.revision)
    allure.dynamic.parameter("cluster", report.cluster)
