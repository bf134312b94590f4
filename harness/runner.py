"""The one short function that runs a drill top to bottom, and the phase actions.

    preflight → provision → bootstrap → converge → verify → disaster →
    provision → bootstrap → converge → verify → report → teardown

The phases and hooks of each scenario are data (harness.core.scenario, harness.scenarios); the
engine calls the hooks by role and knows no scenario by name.

Teardown is registered before the first provision and runs on success, failure, Ctrl-C and
SIGTERM; diagnostics are collected before it; the report is always written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from harness.config import Config
from harness.converge import DEFAULT_KINDS, HELM_RELEASES, Converger, ConvergeResult
from harness.core.scenario import Scenario
from harness.diagnostics import collect_diagnostics
from harness.drill import Drill
from harness.errors import (
    ConfigError,
    DrillFailure,
    DrillInterrupted,
    ReportError,
    RolloutFailed,
    RTOExceeded,
)
from harness.flux import FluxRuntime, FluxSettings, sync_objects
from harness.gc import write_owner
from harness.gitserver import GitServer, RepoRevision, resolve_revision
from harness.kube import api_client, apply_all, ensure_namespace
from harness.providers import (
    ClusterProvider,
    ProviderContext,
    SupportsGitAccess,
    get_provider,
)
from harness.repo import (
    RepoModel,
    SuppliedInputs,
    analyze,
    check_inputs,
    cluster_candidates,
    load_inputs,
)
from harness.report.model import DrillReport, ObjectRecord, RecoveryFigure, Verdict
from harness.report.writers import write_all
from harness.scenarios import SCENARIOS
from harness.tools import (
    EMBEDDED_TOOLS,
    FLUX_TOOLS,
    HELM_TOOLS,
    ResolvedTool,
    ensure_tools,
    flux_crds,
)
from harness.verify import verify_rollouts

log = logging.getLogger(__name__)

KeepCluster = Literal["never", "on-failure", "always"]


@dataclass(frozen=True)
class DrillOptions:
    repo: Path = Path()
    cluster: str | None = None
    """Repo-relative folder with the cluster's Flux objects; found under clusters/ if unset."""
    scenario: str = "full-rebuild"
    provider: str = "embedded"
    report_dir: Path | None = None
    inputs: Path | None = None
    rto_s: float | None = None
    keep_cluster: KeepCluster = "never"
    revision: str = "HEAD"
    converge_timeout_s: float = 300.0
    nodes: int = 3
    run_id: str | None = None
    flux: FluxSettings = field(default_factory=FluxSettings)
    config: Config = field(default_factory=Config.from_env)
    provider_options: dict[str, Any] = field(default_factory=dict)
    scenario_options: dict[str, Any] = field(default_factory=dict)
    """The scenario's own knobs (`--scenario-option key=value`), e.g. the drift targets."""


def new_run_id(prefix: str = "") -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return "-".join(p for p in (prefix, stamp, worker, secrets.token_hex(3)) if p)


def validate_options(opts: DrillOptions) -> None:
    if opts.scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {opts.scenario!r}",
                          fix=f"use one of: {', '.join(sorted(SCENARIOS))}")
    unknown = sorted(set(opts.scenario_options) - set(SCENARIOS[opts.scenario].options))
    if unknown:
        known = ", ".join(sorted(SCENARIOS[opts.scenario].options)) or "none"
        raise ConfigError(f"scenario {opts.scenario} has no option {', '.join(unknown)}",
                          fix=f"its options: {known}")
    get_provider(opts.provider)
    if opts.rto_s is not None and opts.rto_s <= 0:
        raise ConfigError(f"--rto must be a positive number of seconds, got {opts.rto_s}")
    if opts.keep_cluster not in ("never", "on-failure", "always"):
        raise ConfigError(f"--keep-cluster must be never, on-failure or always, "
                          f"got {opts.keep_cluster!r}")


def default_cluster(top: Path) -> str:
    """The only folder under clusters/, or an error listing the choices."""
    candidates = cluster_candidates(top)
    if len(candidates) == 1:
        return candidates[0]
    raise ConfigError(
        "cannot tell which cluster to drill" + (f": the repo has {', '.join(candidates)}"
                                                if candidates else ": the repo has no clusters/"),
        fix="pass --cluster with the repo-relative folder of the cluster's Flux objects")


@dataclass
class RunState:
    """What one drill has made so far; teardown undoes exactly this."""

    opts: DrillOptions
    drill: Drill
    run_id: str
    workdir: Path
    report_dir: Path
    progress: Callable[[str], None]
    tools: dict[str, ResolvedTool] = field(default_factory=dict)
    crds: list[Path] = field(default_factory=list)
    rev: RepoRevision | None = None
    model: RepoModel | None = None
    supplied: SuppliedInputs | None = None
    git: GitServer | None = None
    provider: ClusterProvider | None = None
    api: Any = None
    flux: FluxRuntime | None = None
    converged: dict[int, ConvergeResult] = field(default_factory=dict)
    diagnostics: dict[str, str] = field(default_factory=dict)
    provider_rounds: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Each round's provider description (its host, timings), refreshed after it is deleted."""
    scratch: dict[str, Any] = field(default_factory=dict)
    """What a scenario's hooks keep between phases (snapshots, timings)."""

    @property
    def scenario(self) -> Scenario:
        return SCENARIOS.get(self.opts.scenario, SCENARIOS["full-rebuild"])

    @property
    def flux_settings(self) -> FluxSettings:
        return replace(self.opts.flux, **self.scenario.flux_overrides)

    def option(self, key: str) -> Any:
        """A scenario option: the user's `--scenario-option`, else the scenario's default."""
        return self.scenario.option(self.opts.scenario_options, key)

    def collect(self, rnd: int) -> None:
        """Diagnostics of the live cluster, before anything takes it down."""
        _collect(self, rnd)

    def describe_provider(self, rnd: int) -> None:
        if self.provider is None:
            return
        try:
            self.provider_rounds[rnd] = self.provider.describe()
        except Exception as exc:  # noqa: BLE001 - a description must never hide the real error
            log.warning("describing the round %s provider failed: %s", rnd, exc)

    @property
    def revision(self) -> str:
        assert self.rev is not None
        return f"{self.rev.branch}@sha1:{self.rev.sha}"


# -- phase actions ----------------------------------------------------------------------------

def preflight(s: RunState, rnd: int) -> None:
    factory = get_provider(s.opts.provider)
    wanted = getattr(factory, "required_tools", None)
    provider_tools = wanted({"nodes": s.opts.nodes, **s.opts.provider_options}) \
        if wanted is not None else (*EMBEDDED_TOOLS, *FLUX_TOOLS)
    # kustomize renders the repo in preflight; the scenario's hooks may run tools of their own
    needed = (*provider_tools, "kustomize", *s.scenario.tools)
    s.tools = ensure_tools(s.opts.config, needed, progress=s.progress)
    s.crds = flux_crds(s.opts.config, progress=s.progress)
    s.rev = resolve_revision(s.opts.repo, s.opts.revision)
    cluster = s.opts.cluster or default_cluster(s.rev.path)
    s.model = analyze(s.rev.path, cluster, kustomize=s.tools["kustomize"].path)
    if s.model.uses_helm and FLUX_TOOLS[0] in provider_tools:
        # Host-process Flux: helm-controller too, built only for repos that need it.
        s.tools.update(ensure_tools(s.opts.config, HELM_TOOLS, progress=s.progress))
    s.supplied = load_inputs(s.opts.inputs)
    check_inputs(s.model, s.supplied, s.opts.inputs)
    s.git = GitServer(s.rev, s.workdir / "git").start()
    s.progress(f"preflight: {s.rev.path} at {s.rev.sha[:12]}, {len(s.model.kustomizations)} "
               f"Kustomizations, {len(s.model.manual_inputs)} manual inputs; serving {s.git.url}")


def provision(s: RunState, rnd: int) -> None:
    factory = get_provider(s.opts.provider)
    ctx = ProviderContext(
        run_id=s.run_id, cluster_name=f"r{rnd}", workdir=s.workdir / f"round{rnd}",
        config=s.opts.config, tools=s.tools,
        options={"nodes": s.opts.nodes, **s.opts.provider_options,
                 **(s.scenario.provider_options(rnd, {"nodes": s.opts.nodes,
                                                      **s.opts.provider_options})
                    if s.scenario.provider_options else {})})
    provider = factory(ctx)
    s.provider = provider  # registered before create: teardown deletes half-made clusters too
    try:
        with s.drill.automated_step("provision-cluster", f"Provide a cluster ({s.opts.provider})",
                                    performed_by=f"drdrill ({s.opts.provider} provider)"):
            provider.create()
    finally:
        s.describe_provider(rnd)
    s.api = api_client(provider.kubeconfig)


def bootstrap(s: RunState, rnd: int) -> None:
    assert s.provider is not None and s.model is not None and s.git is not None
    assert s.supplied is not None and s.rev is not None
    ensure_namespace(s.api, "flux-system")
    for item in s.model.manual_inputs:
        needed = ", ".join(item.needed_by)
        if item.replaced_in_drill:
            s.drill.record_manual_step(
                item.id, f"Provide {item.kind} {item.namespace}/{item.name} ({item.field} of "
                f"{needed})", automatable=item.automatable, duration_s=0.0,
                performed_by="not needed in the drill: the local Git server stands in; a real "
                             "recovery needs it")
            continue
        docs = [d for d in s.supplied.docs
                if (d.get("kind"), (d.get("metadata") or {}).get("namespace") or "default",
                    (d.get("metadata") or {}).get("name")) ==
                (item.kind, item.namespace, item.name)]
        with s.drill.manual_step(item.id, f"Provide {item.kind} {item.namespace}/{item.name} "
                                 f"({item.field} of {needed})", automatable=item.automatable,
                                 performed_by="drdrill (from --inputs)"):
            ensure_namespace(s.api, item.namespace)
            apply_all(s.api, docs, source=str(s.opts.inputs))
    with s.drill.automated_step("bootstrap-flux", "Install Flux and apply the sync objects "
                                "(what `flux bootstrap` does)"):
        if s.flux is None or s.flux.provider is not s.provider:
            s.flux = FluxRuntime(s.provider, s.api, s.tools, s.crds, s.flux_settings)
        s.flux.install()
        url = s.provider.git_url(s.git.url) if isinstance(s.provider, SupportsGitAccess) \
            else s.git.url
        apply_all(s.api, sync_objects(url=url, branch=s.rev.branch,
                                      path=s.model.cluster_path, settings=s.flux_settings,
                                      patches=(*s.model.sync_patches, *s.scenario.sync_patches)),
                  source="drdrill sync")


def converge(s: RunState, rnd: int) -> None:
    assert s.model is not None
    kinds = (*DEFAULT_KINDS, HELM_RELEASES) if s.model.uses_helm else DEFAULT_KINDS
    watched = {k.kind for k in kinds}
    expected = {ref for ref in s.model.expected() if ref.split("/", 1)[0] in watched}
    revision_free = frozenset(
        o.ref for o in s.model.objects if o.kind == "Kustomization" and o.path is None
        and o.source_file != "(drdrill bootstrap)")

    def on_change(done: int, total: int, obj: Any) -> None:
        s.progress(f"converge: {done}/{total} ready ({obj.ref} after {obj.ready_after_s:.1f}s)")

    converger = Converger(s.api, s.revision, expected, kinds=kinds, clock=s.drill.clock,
                          start=s.drill.round_start(rnd), on_change=on_change,
                          revision_free=revision_free)
    s.converged[rnd] = converger.run(timeout_s=s.opts.converge_timeout_s)


def verify(s: RunState, rnd: int) -> None:
    problems = verify_rollouts(s.api, timeout_s=60)
    if problems:
        raise RolloutFailed("workloads not rolled out:\n  " + "\n  ".join(problems))
    s.drill.mark("converged", round=rnd)  # converged = Flux objects ready + rolled out
    scenario = s.scenario
    if scenario.verify is not None:
        scenario.verify(s, rnd)
    if rnd == scenario.last_round:
        if s.opts.rto_s is not None:
            ttr = s.drill.time_to_ready(round=rnd)
            if ttr is not None and ttr > s.opts.rto_s:
                raise RTOExceeded(ttr, s.opts.rto_s)
        if scenario.expectation is not None:
            scenario.expectation(s)


def disaster(s: RunState, rnd: int) -> None:
    hook = s.scenario.disaster
    assert hook is not None  # Scenario checks that a disaster phase has its hook
    hook(s, rnd)


def recover(s: RunState, rnd: int) -> None:
    hook = s.scenario.recover
    assert hook is not None
    hook(s, rnd)


ACTIONS: dict[str, Callable[[RunState, int], None]] = {
    "preflight": preflight, "provision": provision, "bootstrap": bootstrap,
    "converge": converge, "verify": verify, "disaster": disaster, "recover": recover,
}


# -- the control flow ---------------------------------------------------------------------------

def run_drill(opts: DrillOptions, *, progress: Callable[[str], None] | None = None,
              drill: Drill | None = None) -> tuple[DrillReport, Path]:
    """Run a scenario end to end; always returns the report (written to disk) and its folder."""
    say = progress or (lambda line: log.info("%s", line))
    run_id = opts.run_id or new_run_id()
    drill = drill or Drill(run_id)
    report_dir = (opts.report_dir or Path("reports") / run_id).resolve()
    workdir = opts.config.runs_dir / run_id
    state = RunState(opts, drill, run_id, workdir, report_dir, say)
    error: BaseException | None = None
    with _signals_raise():
        try:
            validate_options(opts)
            write_owner(workdir)  # `drdrill gc` leaves a live run alone
            for spec in SCENARIOS[opts.scenario].phases:
                drill.round = spec.round
                with drill.phase(spec.name, round=spec.round):
                    ACTIONS[spec.name](state, spec.round)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the report says what happened
            error = exc
            say(f"drill stopped: {type(exc).__name__}: {exc}")
        finally:
            with _signals_ignored():
                verdict: Verdict = "failed" if isinstance(error, DrillFailure) else (
                    "broken" if error is not None else "passed")
                keep = opts.keep_cluster == "always" or (opts.keep_cluster == "on-failure"
                                                         and verdict != "passed")
                report_error: ReportError | None = None
                try:
                    with drill.phase("report", round=0):
                        if state.provider is not None:
                            _collect(state, drill.round)
                        write_all(build_report(state, verdict, error), report_dir)
                except ReportError as exc:  # teardown must still run
                    report_error = exc
                with drill.phase("teardown", round=0):
                    _teardown(state, keep=keep)
                if report_error is not None:
                    verdict, error = "broken", error or report_error
                report = build_report(state, verdict, error)
                try:
                    write_all(report, report_dir)
                except ReportError as exc:
                    say(f"the report could not be written: {exc}")
                    raise
    return report, report_dir


def _collect(s: RunState, rnd: int) -> None:
    if s.provider is None:
        return
    try:
        s.diagnostics.update(collect_diagnostics(s.provider, s.api, s.report_dir,
                                                 f"round{rnd}"))
    except Exception as exc:  # noqa: BLE001 - a failed dump must never hide the real error
        log.warning("collecting diagnostics of round %s failed: %s", rnd, exc)


def _teardown(s: RunState, *, keep: bool) -> None:
    if s.provider is not None:
        if keep:
            s.progress(f"keeping the cluster: KUBECONFIG={s.provider.kubeconfig}; remove it "
                       f"with `drdrill gc --run-id {s.run_id}`")
        else:
            s.provider.delete()
        s.describe_provider(s.drill.round)
    if s.api is not None:
        with contextlib.suppress(Exception):
            s.api.close()
    if s.git is not None:
        s.git.stop()
    if not keep:
        shutil.rmtree(s.workdir, ignore_errors=True)


def build_report(s: RunState, verdict: Verdict, error: BaseException | None) -> DrillReport:
    d = s.drill
    rounds = sorted(s.converged)
    objects: list[ObjectRecord] = []
    for rnd in rounds:
        for t in s.converged[rnd].objects.values():
            objects.append(ObjectRecord(
                kind=t.kind, namespace=t.namespace, name=t.name,
                ready_after_s=None if t.ready_after_s is None else round(t.ready_after_s, 3),
                revision=t.revision, depends_on=t.depends_on, round=rnd,
                first_seen_s=round(t.first_seen_s, 3), ready=t.ready_after_s is not None,
                message=t.last.message if t.last else None))
    last = s.scenario.last_round
    critical = tuple(s.converged[last].critical_path()) if last in s.converged else ()
    settings: dict[str, Any] = {
        "versions": {n: t.version for n, t in s.tools.items()},
        "tool_sources": {n: t.source for n, t in s.tools.items()},
        "flux": s.flux.describe() if s.flux else {
            "requeue_dependency": s.opts.flux.requeue_dependency,
            "concurrent": s.opts.flux.concurrent},
        "provider": s.provider_rounds[max(s.provider_rounds)] if s.provider_rounds else {},
        "provider_rounds": {f"round{r}": d for r, d in sorted(s.provider_rounds.items())},
        "first_build_ttr_s": d.time_to_ready(round=1),
        "converge_timeout_s": s.opts.converge_timeout_s,
        "keep_cluster": s.opts.keep_cluster,
        "local_run_changes": [*(s.model.local_changes if s.model else ()),
                              *s.scenario.local_changes],
    }
    notes = tuple(s.model.notes) if s.model else ()
    return DrillReport(
        run_id=s.run_id, scenario=s.opts.scenario, provider=s.opts.provider,
        repo=str(s.rev.path if s.rev else s.opts.repo), revision=s.rev.sha if s.rev else "",
        verdict=verdict, started_at=d.started_at,
        time_to_ready_s=d.time_to_ready(round=last), rto_target_s=s.opts.rto_s,
        phases=tuple(d.phases), objects=tuple(objects), manual_steps=tuple(d.manual_steps),
        critical_path=critical, settings=settings, diagnostics=dict(s.diagnostics),
        error=_error_text(error), cluster=s.model.cluster_path if s.model else (s.opts.cluster
                                                                               or ""),
        manual_inputs=tuple(i.to_dict() for i in s.model.manual_inputs) if s.model else (),
        notes=notes,
        recovery_round=last,
        recovery_figures=_figures(s),
        automated_steps=tuple(d.automated_steps),
    )


def _figures(s: RunState) -> tuple[RecoveryFigure, ...]:
    if s.scenario.figures is None:
        return ()
    try:
        return tuple(s.scenario.figures(s))
    except Exception as exc:  # noqa: BLE001 - a figure must never hide the drill's real error
        log.warning("computing the %s recovery figures failed: %s", s.opts.scenario, exc)
        return ()


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    return f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM raises DrillInterrupted (SIGINT already raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise DrillInterrupted("SIGTERM")

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Report and teardown must finish: a second Ctrl-C must not leave processes behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
