"""`drdrill`: run drills, manage the pinned tools, list providers."""

from __future__ import annotations

import argparse
import io
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from harness.argtypes import go_duration, local_repo, positive_float, positive_int
from harness.cli.progress import Progress
from harness.config import Config
from harness.errors import DrillInterrupted, HarnessError
from harness.report.redact import redact

if TYPE_CHECKING:
    from harness.report.model import DrillReport


def _add_drill(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from harness.gitops.flux_config import FAST_REQUEUE
    from harness.providers import registry
    from harness.scenarios import SCENARIOS

    p = sub.add_parser("drill", help="run a disaster-recovery drill and write its report")
    # Choices: a typo is one line naming the choices, before a run folder or report exists.
    p.add_argument("--scenario", default="full-rebuild", choices=sorted(SCENARIOS),
                   metavar="SCENARIO",
                   help=f"scenario to run ({', '.join(SCENARIOS)}; default full-rebuild)")
    providers = sorted(registry())
    p.add_argument("--provider", default="embedded", choices=providers, metavar="PROVIDER",
                   help=f"cluster provider ({', '.join(providers)}; default embedded)")
    p.add_argument("--repo", type=local_repo, default=Path(),
                   help="Flux Git repository, a local work tree (default .)")
    p.add_argument("--revision", default="HEAD", help="commit to drill (default HEAD)")
    p.add_argument("--cluster", help="repo-relative folder of the cluster's Flux objects "
                                     "(default: the only folder under clusters/)")
    p.add_argument("--report-dir", type=Path, help="where to write the report "
                                                   "(default reports/<run-id>)")
    p.add_argument("--inputs", type=Path, help="folder of manifests for the manual inputs "
                                               "(Secrets/ConfigMaps not in Git)")
    p.add_argument("--rto", type=positive_float, help="recovery-time objective in seconds")
    p.add_argument("--keep-cluster", choices=("never", "on-failure", "always"), default="never")
    p.add_argument("--timeout", type=positive_float, default=300.0,
                   help="converge deadline per round in seconds (default 300)")
    p.add_argument("--nodes", type=positive_int, default=3,
                   help="simulated nodes (embedded; default 3)")
    p.add_argument("--flux-profile", choices=("repo", "fast"), default=None,
                   help="repo (default; DRDRILL_FLUX_PROFILE): the controllers, flags and "
                        "feature gates the repo configures, Flux's defaults elsewhere; fast: "
                        "drill-only tuning, "
                        f"--requeue-dependency={FAST_REQUEUE} (TTR then predicts less)")
    p.add_argument("--requeue-dependency", default=None, type=go_duration,
                   help="override Flux --requeue-dependency for every controller that has it "
                        "(default: the repo's own, else Flux's 30s)")
    p.add_argument("--tools-dir", type=Path, help="folder with the pinned binaries")
    p.add_argument("--scenario-option", action="append", default=[], metavar="KEY=VALUE",
                   type=_key_value, help="a scenario's own knob (see `drdrill scenarios list "
                                         "-v`), e.g. outage_s=30; repeatable")
    from harness.providers.lab import add_provider_options

    add_provider_options(p)
    p.set_defaults(func=_cmd_drill)


def _cmd_drill(args: argparse.Namespace) -> int:
    from harness.core.recorder import Drill
    from harness.drill import DrillOptions, new_run_id, open_run
    from harness.flux import FluxSettings
    from harness.providers.lab import provider_options_from_args

    config = Config.from_env(tools_dir=args.tools_dir)
    progress = Progress()
    drill = Drill(new_run_id())
    drill.listeners.append(progress.phase)
    opts = DrillOptions(
        repo=args.repo, cluster=args.cluster, scenario=args.scenario, provider=args.provider,
        report_dir=args.report_dir, inputs=args.inputs, rto_s=args.rto,
        keep_cluster=args.keep_cluster, revision=args.revision, converge_timeout_s=args.timeout,
        nodes=args.nodes, flux=FluxSettings(profile=args.flux_profile,
                                                    requeue_dependency=args.requeue_dependency),
        config=config, provider_options=provider_options_from_args(args),
        scenario_options=dict(args.scenario_option), run_id=drill.run_id)
    with open_run(opts, progress=progress, drill=drill) as run:
        run.execute()
    _quietly(progress.close)
    if run.report_error is not None:
        _say_safely(f"drdrill: error: {redact(str(run.report_error))}", sys.stderr)
    elif run.report is not None:
        summary = io.StringIO()
        print_summary(run.report, run.plan.report_dir, summary)
        _say_safely(summary.getvalue(), sys.stdout, end="")
    return run.exit_code


def _say_safely(text: str, stream: TextIO, *, end: str = "\n") -> None:
    """The last words of a drill: its report is written, so a closed console costs nothing."""

    def say() -> None:
        stream.write(text + end)
        stream.flush()

    _quietly(say)


def _quietly(write: Callable[[], None]) -> None:
    from harness.core.engine import silence_closed_streams

    try:
        write()
    except OSError:
        silence_closed_streams()


def print_summary(report: DrillReport, report_dir: Path, out: TextIO = sys.stdout) -> None:
    recovery = report.recovery_manual_steps
    ttr = f"{report.time_to_ready_s:.1f}s" if report.time_to_ready_s is not None else "n/a"
    rto = f" (RTO {report.rto_target_s:.0f}s)" if report.rto_target_s else ""
    out.write(f"verdict: {report.verdict.upper()}\n")
    out.write(f"time-to-ready (recovery): {ttr}{rto}\n")
    fig = report.recovery_figure
    if fig is not None:
        value = f"{fig.value_s:.1f}s" if fig.value_s is not None else "not reached"
        out.write(f"{fig.label}: {value}\n")
    auto = ", ".join(a.id for a in report.automated_steps if a.round == report.recovery_round)
    out.write(f"manual steps (recovery): {len(recovery)}"
              + (f" (automated by drdrill: {auto})" if auto else "") + "\n")
    if report.error:
        lines = redact(report.error).splitlines()
        out.write("error: " + "\n       ".join(lines[:12]) + ("\n       ..." if len(lines) > 12
                                                              else "") + "\n")
    for item in report.leftovers:
        out.write(f"left behind: {item}\n")
    if report.leftovers:
        out.write(f"fix: drdrill gc --run-id {report.run_id}\n")
    out.write(f"report: {report_dir / 'report.json'}\n")
    for name in ("report.md", "index.html", "junit.xml", "allure-results"):
        if (report_dir / name).exists():
            out.write(f"        {report_dir / name}\n")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from harness.scenarios import SCENARIOS

    width = max(len(n) for n in SCENARIOS)
    for name, sc in SCENARIOS.items():
        print(f"{name:<{width}}  {sc.summary}")
        if args.verbose_list:
            print(f"{'':<{width}}  figure: {sc.figure}; phases: "
                  + " → ".join(p.name for p in sc.phases))
            if sc.options:
                print(f"{'':<{width}}  options: "
                      + ", ".join(f"{k}={'(auto)' if v is None else v}"
                                  for k, v in sc.options.items()))
    return 0


def _cmd_providers(args: argparse.Namespace) -> int:
    from harness.providers import registry

    config = Config.from_env()
    for name, factory in sorted(registry().items()):
        check = getattr(factory, "availability", None)
        if check is None:
            print(f"{name:<10} unknown (the provider cannot check itself)")
            continue
        ok, why = check(config)
        print(f"{name:<10} {'available' if ok else 'unavailable'}: {why}")
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    from harness.gc import gc, parse_age

    config = Config.from_env()
    res = gc(config.runs_dir, older_than_s=parse_age(args.older_than), run_id=args.run_id,
             dry_run=args.dry_run, include_kept=args.include_kept)
    verb = "would remove" if args.dry_run else "removed"
    for s in res.swept:
        killed = len(s.pids) - sum(f.startswith("process ") for f in s.failed)
        print(f"{verb} run {s.run_id}: {killed} processes"
              + (f", {s.removed}" if s.removed and f"folder {s.removed}" not in s.failed else "")
              + (f", {', '.join(s.docker)}" if s.docker else ""))
        for item in s.failed:
            print(f"could not remove: run {s.run_id}: {item}", file=sys.stderr)
    why = {
        "kept": "kept with --keep-cluster; remove it with `drdrill gc --run-id {rid}` or "
                "--include-kept",
        "alive": "still running",
        "unknown": "its owner is in another pid namespace or boot, so whether it still runs "
                   "cannot be checked from here; pass --older-than (e.g. 2h) or --run-id",
        "young": f"younger than --older-than {args.older_than}",
    }
    for reason, rids in res.left.items():
        for rid in rids:
            print(f"left alone: run {rid}: {why[reason].format(rid=rid)}")
    if not res.swept:
        print("nothing to remove")
    return 1 if any(s.failed for s in res.swept) else 0


def build_parser(*, light: bool = False) -> argparse.ArgumentParser:
    """All subcommands; with `light`, only the offline ones, so that `drdrill preflight` loads
    no cluster code (the drill's options come from the runner, providers and Flux)."""
    parser = argparse.ArgumentParser(prog="drdrill", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    from harness.cli.init import add_init_command, version

    parser.add_argument("--version", action="version", version=f"drdrill {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    from harness.cli.preflight import add_preflight_commands

    add_preflight_commands(sub)
    add_init_command(sub)
    if light:
        return parser
    _add_drill(sub)
    from harness.cli.tools import add_tools_commands

    add_tools_commands(sub)
    from harness.images.cli import add_kind_image_commands

    add_kind_image_commands(sub)
    from harness.report.cli import add_report_commands

    add_report_commands(sub)
    from harness.bench.cli import add_bench_command

    add_bench_command(sub)
    from harness.cli.mirror import add_mirror_commands

    add_mirror_commands(sub)
    p = sub.add_parser("gc", help="remove leftovers of runs that were killed (-9)")
    p.add_argument("--older-than", help="only runs older than this (e.g. 1h); also sweeps runs "
                                        "whose owner cannot be checked from here")
    p.add_argument("--run-id", help="only this run (also when kept, unless it is running)")
    p.add_argument("--include-kept", action="store_true",
                   help="also remove clusters kept with --keep-cluster")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed")
    p.set_defaults(func=_cmd_gc)
    p = sub.add_parser("scenarios", help="the scenario library")
    ssub = p.add_subparsers(dest="scenarios_command", required=True)
    q = ssub.add_parser("list", help="one line per scenario")
    q.add_argument("-v", "--verbose", dest="verbose_list", action="store_true",
                   help="also the figure, phases and options of each")
    q.set_defaults(func=_cmd_scenarios)
    p = sub.add_parser("providers", help="list the registered cluster providers")
    p.set_defaults(func=_cmd_providers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from harness.cli.preflight import LIGHT_COMMANDS

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(light=command in LIGHT_COMMANDS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # urllib3 retries are the kubernetes client's business; their warnings are noise here.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    # paramiko logs an ERROR per failed port forward when a lab host's apiserver goes away
    # (that is the disaster); the drill reports what matters.
    logging.getLogger("paramiko").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    try:
        rc: int = args.func(args)
        return rc
    except HarnessError as exc:
        _say_safely(f"drdrill: error: {redact(str(exc))}", sys.stderr)
        return 2
    except DrillInterrupted as exc:
        _say_safely(f"drdrill: {exc}", sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        _say_safely("drdrill: interrupted", sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
