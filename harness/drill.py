"""A drill of a Flux repository: its options, what it has made so far, and the phase actions.

    preflight → provision → bootstrap → converge → verify → disaster →
    provision → bootstrap → converge → verify → report → teardown

`RunState` is the plan the engine (harness.core.engine) runs: `with open_run(opts) as run:
run.execute()`. The run is one context stack (harness.core.resources): the run folder, the Git
server and each cluster are registered the moment they exist and released in reverse order on
every path — success, failure, SIGINT/SIGTERM/SIGHUP, a closed console. Diagnostics are
collected before teardown; the report is written before teardown and again last, naming
whatever could not be released.

The phases and hooks of each scenario are data (harness.core.scenario, harness.scenarios); the
engine calls the hooks by role and knows no scenario by name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import shutil
import tempfile
import time
from argparse import ArgumentTypeError
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.argtypes import go_duration
from harness.command import stop_all
from harness.config import Config
from harness.converge import Converger, ConvergeResult, watched_kinds
from harness.core.engine import Console, Ending, Run
from harness.core.recorder import Drill, describe_error
from harness.core.resources import Resource, Resources
from harness.core.scenario import PhaseSpec, Scenario
from harness.diagnostics import collect_diagnostics
from harness.errors import (
    ConfigError,
    DisasterIncomplete,
    HarnessError,
    RepoError,
    RolloutFailed,
    RTOExceeded,
    ToolError,
)
from harness.flux import FLUX_NAMESPACE, SYNC_NAME, FluxRuntime, FluxSettings, sync_objects
from harness.flux import hops as hops_log
from harness.flux.install import FLUX_ALL, describe_settings
from harness.gc import write_kept, write_owner
from harness.gitops.inputs import (
    SuppliedInputs,
    check_inputs,
    input_key,
    load_inputs,
    with_supplied,
)
from harness.gitops.model import RepoModel, analyze
from harness.gitops.preflight import default_cluster
from harness.gitops.revision import committed
from harness.gitserver import GitServer, RepoRevision, resolve_revision
from harness.kube import api_client, apply_all, ensure_namespace
from harness.mirror.nodes import registries_named
from harness.mirror.redirect import redirects
from harness.podcauses import live_pod_causes
from harness.procs import RUN_ID_ENV, drill_processes
from harness.providers import (
    ClusterProvider,
    ProviderContext,
    SupportsGitAccess,
    get_provider,
    leftovers,
)
from harness.report.model import (
    CriticalHop,
    DrillReport,
    ObjectRecord,
    RecoveryFigure,
    Verdict,
)
from harness.report.redact import report_error
from harness.report.writers import write_all
from harness.scenarios import SCENARIOS
from harness.tools import (
    EMBEDDED_TOOLS,
    FLUX_TOOLS,
    HELM_TOOLS,
    IMAGE_TOOLS,
    NOTIFICATION_TOOLS,
    WATCHER_TOOLS,
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
    """What argparse checks for the CLI, checked again for API and pytest callers."""
    try:
        if opts.flux.requeue_dependency is not None:
            go_duration(opts.flux.requeue_dependency)
    except ArgumentTypeError as exc:
        raise ConfigError(f"--requeue-dependency: {exc}") from None
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
    mirror_changes: list[str] = field(default_factory=list)
    """Sources the drill pointed at its registry mirror (local changes of the run)."""
    git_summary: dict[str, Any] = field(default_factory=dict)
    """What was pushed to the drill's Git server (read before teardown removes it)."""
    """Each round's provider description (its host, timings), refreshed after it is deleted."""
    resources: Resources = field(default_factory=Resources)
    """The run's one context stack; teardown is `resources.close()`."""
    cluster: Resource | None = None
    """The current round's cluster on the stack."""
    scratch: dict[str, Any] = field(default_factory=dict)
    """What a scenario's hooks keep between phases (snapshots, timings)."""

    @property
    def scenario(self) -> Scenario:
        return SCENARIOS.get(self.opts.scenario, SCENARIOS["full-rebuild"])

    @property
    def flux_settings(self) -> FluxSettings:
        """The drill's choices (profile, options, the scenario's flags) over the repo's own."""
        base = self.opts.flux.with_repo(self.model.flux) if self.model else self.opts.flux
        if base.profile is None:
            base = replace(base, profile=self.opts.config.flux_profile)
        return replace(base, **self.scenario.flux_overrides)

    def option(self, key: str) -> Any:
        """A scenario option: the user's `--scenario-option`, else the scenario's default."""
        return self.scenario.option(self.opts.scenario_options, key)

    def collect(self, rnd: int) -> None:
        """Diagnostics of the live cluster, before anything takes it down."""
        _collect(self, rnd)

    def lose_cluster(self, rnd: int) -> None:
        """Lose the cluster: every process and its data are gone, as if the hardware died.

        Checked against the real world (processes, ports, containers), not the provider's
        word; what is left stays on the stack, so teardown tries again and names it."""
        assert self.provider is not None and self.cluster is not None
        _collect(self, rnd)
        left = self.resources.release(self.cluster)
        if left:
            raise DisasterIncomplete(f"r{rnd}", left)
        self.provider, self.cluster, self.flux = None, None, None

    @property
    def keep_always(self) -> bool:
        return self.opts.keep_cluster == "always"

    def own_run_folder(self) -> None:
        """The run folder first (released last), with the owner mark `drdrill gc` reads, and a
        processes-of-this-run probe: whatever a release missed is found in /proc."""
        folder = self.workdir

        def remove() -> None:
            if folder.exists():
                shutil.rmtree(folder)

        self.resources.push("run folder", remove, keepable=True, leftovers=lambda: (
            [f"folder {folder}"] if folder.exists() else []) + [
            f"process {pid} of run {self.run_id}" for pid, env in drill_processes()
            if env.get(RUN_ID_ENV) == self.run_id])
        write_owner(folder)
        if self.keep_always:  # also after a kill -9: plain `drdrill gc` must leave it alone
            write_kept(folder, "--keep-cluster always")

    def own_cluster(self, provider: ClusterProvider, rnd: int) -> None:
        """Register a cluster before it is created: teardown deletes half-made ones too."""

        def release() -> None:
            if self.api is not None:
                with contextlib.suppress(Exception):
                    self.api.close()
                self.api = None
            try:
                provider.delete()
            finally:
                self.describe_provider(rnd)

        self.provider = provider
        self.cluster = self.resources.push(f"cluster r{rnd} ({provider.name})", release,
                                           leftovers=lambda: leftovers(provider), keepable=True)

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

    # -- the engine's plan (harness.core.engine.Plan) ------------------------------------------

    @property
    def phases(self) -> tuple[PhaseSpec, ...]:
        return self.scenario.phases

    def start(self) -> None:
        validate_options(self.opts)
        self.check_report_dir()
        self.own_run_folder()

    def check_report_dir(self) -> None:
        """The report folder must take files now: found out in a second, not after both
        rounds ran (the report is what the drill is for)."""
        try:
            self.report_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.report_dir, prefix=".drdrill-probe-")
            os.close(fd)
            Path(probe).unlink()
        except OSError as exc:
            raise report_error(self.report_dir, exc, folder=True) from exc

    def act(self, name: str, rnd: int) -> None:
        ACTIONS[name](self, rnd)

    def halt(self) -> None:
        stopped = stop_all()
        if stopped:
            log.debug("interrupt: stopped %d running programs", stopped)

    def keep(self, verdict: Verdict) -> bool:
        return self.provider is not None and (self.opts.keep_cluster == "always" or (
            self.opts.keep_cluster == "on-failure" and verdict != "passed"))

    def kept(self) -> None:
        kubeconfig = str(self.provider.kubeconfig) if self.provider is not None else ""
        write_kept(self.workdir, f"--keep-cluster {self.opts.keep_cluster}",
                   kubeconfig=kubeconfig)
        self.progress(f"keeping the cluster: KUBECONFIG={kubeconfig}; remove it with "
                      f"`drdrill gc --run-id {self.run_id}`")
        if self.git is not None:
            self.progress(f"the drill's Git server ({self.git.url}) ends with drdrill: the kept "
                          "cluster's GitRepository will fail to fetch (connection refused) from "
                          "its next interval on; point it at a remote you serve to keep "
                          "reconciling")

    def build_report(self, ending: Ending) -> DrillReport:
        return build_report(self, ending)

    def bare_report(self, ending: Ending) -> DrillReport:
        return DrillReport(
            run_id=self.run_id, scenario=self.opts.scenario, provider=self.opts.provider,
            repo=str(self.opts.repo), revision=self.rev.sha if self.rev else "",
            verdict=ending.verdict, started_at=self.drill.started_at, time_to_ready_s=None,
            rto_target_s=self.opts.rto_s, phases=tuple(self.drill.phases), objects=(),
            manual_steps=tuple(self.drill.manual_steps), critical_path=(), settings={},
            diagnostics=dict(self.diagnostics), error=describe_error(ending.error),
            **_ending_fields(ending))

    def write(self, report: DrillReport) -> None:
        write_all(report, self.report_dir)


# -- phase actions ----------------------------------------------------------------------------

def preflight(s: RunState, rnd: int) -> None:
    # The repo first, with nothing built but kustomize: a typo fails before a cold build.
    s.tools = ensure_tools(s.opts.config, ("kustomize", *s.scenario.tools), progress=s.progress)
    s.rev = resolve_revision(s.opts.repo, s.opts.revision)
    # The commit Flux will get, never the working tree (an uncommitted fix is not a fix).
    with committed(s.opts.repo.resolve(), s.rev.sha) as commit:
        cluster = s.opts.cluster or default_cluster(commit.path)
        s.model = replace(analyze(commit.path, cluster, kustomize=s.tools["kustomize"].path),
                          top=s.opts.repo.resolve())
    s.model.raise_for_problems(unsupported=True)
    for line in s.model.local_changes:
        log.info("local run: %s", line)
    s.supplied = load_inputs(s.opts.inputs)
    check_inputs(s.model, s.supplied, s.opts.inputs)
    factory = get_provider(s.opts.provider)
    wanted = getattr(factory, "required_tools", None)
    provider_tools = wanted({"nodes": s.opts.nodes, **s.opts.provider_options}) \
        if wanted is not None else (*EMBEDDED_TOOLS, *FLUX_TOOLS)
    extra: tuple[str, ...] = ()
    if FLUX_TOOLS[0] in provider_tools:
        # The other controllers of the release only for repos whose kinds need them.
        needed = s.model.controllers()
        extra = tuple(t for t in (*HELM_TOOLS, *WATCHER_TOOLS, *NOTIFICATION_TOOLS, *IMAGE_TOOLS)
                      if t in needed)
    if WATCHER_TOOLS[0] in extra:
        try:
            s.tools.update(ensure_tools(s.opts.config, WATCHER_TOOLS, progress=s.progress))
        except ToolError as exc:
            gens = [o.ref for o in s.model.objects if o.kind == "ArtifactGenerator"]
            raise RepoError(
                f"{', '.join(gens)} needs source-watcher {exc.version or ''}, which cannot be "
                f"resolved here: {exc.message.splitlines()[0]}", obj=gens[0],
                fix=exc.fix or "supply source-watcher with --tools-dir") from exc
        extra = tuple(t for t in extra if t not in WATCHER_TOOLS)
    s.tools.update(ensure_tools(s.opts.config, (*provider_tools, *extra), progress=s.progress))
    s.crds = flux_crds(s.opts.config, progress=s.progress)
    s.git = s.resources.enter("git server", GitServer(s.rev, s.workdir / "git"))
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
                    if s.scenario.provider_options else {}),
                 **({"mirror_registries": registries_named(s.model.external_dependencies)}
                    if s.model is not None and getattr(factory, "uses_mirror", False) else {})},
        keep=s.keep_always)
    provider = factory(ctx)
    s.own_cluster(provider, rnd)
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
    supplied = s.supplied.keys()
    for item in s.model.manual_inputs:
        needed = ", ".join(item.needed_by)
        if item.status != "missing" and (item.kind, item.namespace, item.name) not in supplied:
            continue  # optional, or produced at run time by another controller
        if item.replaced_in_drill:
            s.drill.record_manual_step(
                item.id, f"Provide {item.kind} {item.namespace}/{item.name} ({item.field} of "
                f"{needed})", automatable=item.automatable, duration_s=0.0,
                performed_by="not needed in the drill: the local Git server stands in; a real "
                             "recovery needs it")
            continue
        docs = [d for d in s.supplied.docs
                if input_key(d) == (item.kind, item.namespace, item.name)]
        with s.drill.manual_step(item.id, f"Provide {item.kind} {item.namespace}/{item.name} "
                                 f"({item.field} of {needed})", automatable=item.automatable,
                                 performed_by="drdrill (from --inputs)"):
            if item.namespace:
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
                                      patches=(*s.model.sync_patches, *s.scenario.sync_patches,
                                               *_mirror_redirects(s))),
                  source="drdrill sync")


def _mirror_redirects(s: RunState) -> tuple[dict[str, Any], ...]:
    """Chart sources pointed at the provider's registry mirror, when it runs one."""
    assert s.model is not None
    mirror = getattr(s.provider, "mirror_address", None)
    if not mirror:
        return ()
    red = redirects(s.model.rendered, f"Kustomization/{FLUX_NAMESPACE}/{SYNC_NAME}", mirror)
    for line in (*red.changes, *(f"not redirected to the mirror: {x}" for x in red.skipped)):
        if line.split(" -> ")[0] not in {c.split(" -> ")[0] for c in s.mirror_changes}:
            s.mirror_changes.append(line)
    return red.patches


def converge(s: RunState, rnd: int) -> None:
    assert s.model is not None and s.git is not None
    needed = s.model.controllers()
    kinds = watched_kinds(helm=s.model.uses_helm, watcher=s.model.uses_watcher,
                          notification="notification-controller" in needed,
                          image=bool({"image-reflector-controller",
                                      "image-automation-controller"} & set(needed)))
    watched = {k.kind for k in kinds}
    expected = {ref for ref in s.model.expected() if ref.split("/", 1)[0] in watched}
    revision_free = frozenset(
        o.ref for o in s.model.objects if o.kind == "Kustomization" and o.path is None
        and o.source_file != "(drdrill bootstrap)")
    tty = bool(getattr(s.progress, "tty", False))
    shown: list[tuple[str, float]] = [("", 0.0)]

    def on_progress(line: str) -> None:
        # On change in CI logs; on a terminal also every few seconds (elapsed time moves).
        now = time.monotonic()
        if line != shown[0][0] or (tty and now - shown[0][1] >= 3.0):
            shown[0] = (line, now)
            s.progress(line)

    converger = Converger(s.api, s.revision, expected, kinds=kinds, clock=s.drill.clock,
                          start=s.drill.round_start(rnd),
                          revision_free=revision_free, on_progress=on_progress,
                          sync_sources=frozenset(s.model.sync_sources),
                          webhooks=dict(s.model.webhooks),
                          webhooks_unrunnable=s.opts.provider == "embedded",
                          own_urls=tuple({s.git.url, s.provider.git_url(s.git.url) if isinstance(
                              s.provider, SupportsGitAccess) else s.git.url}),
                          # kwok's pods are simulated: only real kubelets have causes to name.
                          pod_probe=(lambda: live_pod_causes(s.api))
                          if s.opts.provider != "embedded" else None,
                          egress_policy=getattr(s.provider, "egress", None))
    # Registered before the run: a failed or interrupted converge still reports every object.
    s.converged[rnd] = ConvergeResult(converger.objects, None)
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


# -- the run ---------------------------------------------------------------------------------

def open_run(opts: DrillOptions, *, progress: Callable[[str], None] | None = None,
             drill: Drill | None = None) -> Run:
    """The drill as a context manager: `with open_run(opts) as run: run.execute()`; afterwards
    `run.report` is written and `run.exit_code` says how it ended (see harness.core.engine)."""
    run_id = opts.run_id or (drill.run_id if drill is not None else new_run_id())
    drill = drill or Drill(run_id)
    console = Console(progress)
    report_dir = (opts.report_dir or Path("reports") / run_id).resolve()
    state = RunState(opts, drill, run_id, opts.config.runs_dir / run_id, report_dir, console)
    console(f"run {run_id}: {opts.scenario} on {opts.provider}, report in {report_dir}")
    return Run(state, drill, console)


def run_drill(opts: DrillOptions, *, progress: Callable[[str], None] | None = None,
              drill: Drill | None = None) -> tuple[DrillReport, Path]:
    """Run a scenario end to end; always returns the report (written to disk) and its folder.

    Raises ReportError only when report.json itself could not be written."""
    with open_run(opts, progress=progress, drill=drill) as run:
        run.execute()
    if run.report_error is not None:
        raise run.report_error
    assert run.report is not None
    return run.report, run.plan.report_dir


def _collect(s: RunState, rnd: int) -> None:
    if s.git is not None and s.git.running:
        # What was pushed to the drill's own server (image automation), never to a remote.
        with contextlib.suppress(HarnessError):
            s.git_summary = {"pushes": s.git.pushes, "branches": s.git.branches()}
    if s.provider is None:
        return
    try:
        s.diagnostics.update(collect_diagnostics(
            s.provider, s.api, s.report_dir, f"round{rnd}", s.workdir / "dumps" / f"round{rnd}"))
    except Exception as exc:  # noqa: BLE001 - a failed dump must never hide the real error
        log.warning("collecting diagnostics of round %s failed: %s", rnd, exc)


def _inputs(s: RunState) -> tuple[dict[str, Any], ...]:
    """The manual-input inventory, with what --inputs supplied marked `supplied`."""
    if s.model is None:
        return ()
    items = s.model.manual_inputs if s.supplied is None else with_supplied(
        s.model.manual_inputs, s.supplied)
    return tuple(i.to_dict() for i in items)


def _ending_fields(ending: Ending) -> dict[str, Any]:
    teardown = ending.teardown
    return {
        "leftovers": tuple(teardown.failures + teardown.leftovers) if teardown else (),
        "interrupted_by": ending.signal,
        "output_lost": tuple(str(x).split("\n  fix: ")[0] for x in ending.output_lost),
    }


def build_report(s: RunState, ending: Ending) -> DrillReport:
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
                message=t.last.message if t.last else None,
                reason=t.last.reason if t.last else None, conditions=t.conditions,
                waiting_on=t.waiting_on or None, url=t.url))
        if s.model is not None and rnd == rounds[-1] and s.converged[rnd].converged_after_s \
                is None:
            seen = set(s.converged[rnd].objects)
            for ref in sorted(s.model.expected() - seen):
                kind, ns, name = ref.split("/", 2)
                objects.append(ObjectRecord(kind=kind, namespace=ns, name=name,
                                            ready_after_s=None, revision=None, round=rnd,
                                            message="never appeared in the cluster",
                                            waiting_on="its parent to apply it"))
    last = s.scenario.last_round
    critical = _split_hops(s, tuple(s.converged[last].critical_path()), last) \
        if last in s.converged else ()
    settings: dict[str, Any] = {
        "versions": {n: t.version for n, t in s.tools.items()},
        "tool_sources": {n: t.source for n, t in s.tools.items()},
        "flux": s.flux.describe() if s.flux else describe_settings(
            s.flux_settings, [c for c in FLUX_ALL if c in s.tools]),
        "provider": s.provider_rounds[max(s.provider_rounds)] if s.provider_rounds else {},
        "provider_rounds": {f"round{r}": d for r, d in sorted(s.provider_rounds.items())},
        "first_build_ttr_s": d.time_to_ready(round=1),
        "converge_timeout_s": s.opts.converge_timeout_s,
        "keep_cluster": s.opts.keep_cluster,
        "local_run_changes": [*(s.model.local_changes if s.model else ()),
                              *s.scenario.local_changes, *s.mirror_changes],
    }
    if s.git_summary:
        settings["git_server"] = dict(s.git_summary)
    notes = tuple(s.model.notes) if s.model else ()
    return DrillReport(
        run_id=s.run_id, scenario=s.opts.scenario, provider=s.opts.provider,
        repo=str(s.rev.path if s.rev else s.opts.repo), revision=s.rev.sha if s.rev else "",
        repo_id=s.rev.identity if s.rev else s.opts.repo.resolve().name,
        verdict=ending.verdict, started_at=d.started_at,
        time_to_ready_s=d.time_to_ready(round=last), rto_target_s=s.opts.rto_s,
        phases=tuple(d.phases), objects=tuple(objects), manual_steps=tuple(d.manual_steps),
        critical_path=critical, settings=settings, diagnostics=dict(s.diagnostics),
        error=describe_error(ending.error),
        cluster=s.model.cluster_path if s.model else (s.opts.cluster or ""),
        manual_inputs=_inputs(s),
        notes=notes,
        external_dependencies=tuple(d.to_dict() for d in s.model.external_dependencies)
        if s.model else (),
        embedded_limits=tuple(x.to_dict() for x in s.model.limits) if s.model else (),
        recovery_round=last,
        recovery_figures=_figures(s),
        automated_steps=tuple(d.automated_steps),
        egress=_egress(s),
        **_ending_fields(ending),
    )


def _egress(s: RunState) -> dict[str, Any]:
    """The last round's egress record (the recovery), with what earlier rounds refused too."""
    rounds = [(r, d["egress"]) for r, d in sorted(s.provider_rounds.items())
              if isinstance(d.get("egress"), dict) and d["egress"]]
    if not rounds:
        return {}
    last = dict(rounds[-1][1])
    last["rounds"] = {f"round{r}": {"blocked": len(e.get("blocked") or []),
                                    "reached": len(e.get("reached") or [])} for r, e in rounds}
    return last


LOGGED_CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller")


def _split_hops(s: RunState, hops: tuple[CriticalHop, ...], rnd: int) -> tuple[CriticalHop, ...]:
    """Each hop with its reconcile split as the controllers logged it (when their logs were
    collected: host-process controllers). Best effort: a hop the logs do not explain keeps
    the drill's own figures only."""
    starts = [p for p in s.drill.phases if p.round == rnd and p.name != "preflight"]
    if not hops or not starts:
        return hops
    lines: list[hops_log.LogLine] = []
    for name in LOGGED_CONTROLLERS:
        rel = s.diagnostics.get(f"round{rnd}/logs/{name}")
        if rel:
            with contextlib.suppress(OSError):
                lines += hops_log.parse((s.report_dir / rel).read_text(
                    encoding="utf-8", errors="replace").splitlines())
    if not lines:
        return hops
    t0 = dt.datetime.fromisoformat(min(starts, key=lambda p: p.offset_s).started_at).timestamp()
    out = []
    for i, hop in enumerate(hops):
        dep = t0 + hops[i - 1].ready_after_s if i and hop.waited_on_dependency_s > 0 else None
        got = hops_log.split(lines, hop.ref, not_before=t0 - 1.0, dependency_ready=dep)
        out.append(replace(hop, split=got.to_dict()) if got else hop)
    return tuple(out)


def _figures(s: RunState) -> tuple[RecoveryFigure, ...]:
    if s.scenario.figures is None:
        return ()
    try:
        return tuple(s.scenario.figures(s))
    except Exception as exc:  # noqa: BLE001 - a figure must never hide the drill's real error
        log.warning("computing the %s recovery figures failed: %s", s.opts.scenario, exc)
        return ()
