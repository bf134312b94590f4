"""`drdrill init`: write the nightly CI job for the repository (GitHub Actions, or GitLab with
`--ci gitlab`) from what preflight finds: cluster folders, the provider each can run on, the
manual inputs as CI secrets. Idempotent; never overwrites a file it did not write.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.argtypes import positive_float
from harness.config import Config
from harness.errors import ConfigError, RepoError

PROVIDERS = ("embedded", "kind", "k3d", "lab")


def version() -> str:
    """The installed drdrill's version (the source tree's when run from a checkout)."""
    try:
        return metadata.version("drdrill")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def add_init_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init", help="write the nightly CI job that drills this repository "
                     "(.github/workflows/drdrill.yaml, or .gitlab-ci.yml with --ci gitlab)",
        description="Preflight finds the cluster folders, the provider each can run on (the "
                    "embedded one unless it has embedded limits, then kind) and the manual "
                    "inputs; init writes a CI job with a matrix of cluster x provider that runs "
                    "nightly and on demand, caches the pinned tools keyed by their pins, writes "
                    "each input from a CI secret into a 0700 folder, uploads the reports, puts "
                    "report.md in the job summary, and merges the cells into a fleet page and "
                    "an Allure 3 report with history. Running it again rewrites only its own "
                    "unedited file.")
    p.add_argument("--repo", type=Path, default=Path(), help="the Flux repository (default .)")
    p.add_argument("--ci", choices=("github", "gitlab"), default="github",
                   help="which CI to write for (default github)")
    p.add_argument("--cluster", action="append", default=[], metavar="DIR",
                   help="only these cluster folders (repeatable; default: every one it syncs)")
    p.add_argument("--provider", action="append", default=[], choices=PROVIDERS,
                   help="drill every cluster on these providers (repeatable; default: chosen "
                        "per cluster from its embedded limits)")
    p.add_argument("--rto", type=positive_float, help="recovery-time objective in seconds")
    p.add_argument("--schedule", default=None, metavar="CRON",
                   help="when the nightly run starts (cron, UTC; default '17 3 * * *')")
    p.add_argument("--install", default=None, metavar="PIP-SPEC",
                   help=f"what the job pip-installs (default drdrill=={version()})")
    p.add_argument("--dry-run", action="store_true", help="print the file instead of writing it")
    p.add_argument("--tools-dir", type=Path, help="folder with the pinned binaries")
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from harness.ci import files, github, gitlab
    from harness.ci.plan import SCHEDULE, build_plan
    from harness.gitops import preflight as pf
    from harness.gitops.bootstrap import discover_cluster_paths
    from harness.gitops.sourceignore import source_files
    from harness.tools import ensure_tools, pins_digest

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    top = args.repo.resolve()
    if not top.is_dir():
        raise ConfigError(f"{args.repo} is not a folder", fix="pass --repo the repository")
    config = Config.from_env(tools_dir=args.tools_dir)
    kustomize = ensure_tools(config, ("kustomize",), progress=say)["kustomize"].path
    clusters = args.cluster or discover_cluster_paths(top, source_files(top))

    def preflight(cluster: str) -> dict[str, Any]:
        try:
            data = pf.run_preflight(top, cluster, None, kustomize=kustomize)
        except (RepoError, ConfigError) as exc:
            data = pf.error_data(top, cluster, exc)
        say(f"preflight {cluster}: {data['verdict']}, "
            f"{len(data.get('embedded_limits') or ())} embedded limit(s), "
            f"{sum(1 for i in data.get('manual_inputs') or () if i.get('status') == 'missing')}"
            " manual input(s)")
        return data

    plan = build_plan(top, clusters, preflight, providers=args.provider, rto_s=args.rto,
                      schedule=args.schedule or SCHEDULE)
    install = args.install or f"drdrill=={version()}"
    if args.ci == "github":
        path, text = github.PATH, github.render(plan, install=install, version=version())
    else:
        path, text = gitlab.PATH, gitlab.render(plan, install=install, version=version(),
                                                pins=pins_digest())
    target = top / path
    if args.dry_run:
        files.check_ours(target)
        sys.stdout.write(text)
        say(f"(dry run: {target} not written)")
        return 0
    written = files.write_owned(target, text)
    print(f"{written.outcome}: {written.path}")
    for cell in plan.cells:
        print(f"  cell: {cell.cluster} on {cell.provider}"
              + (f", inputs {', '.join(cell.inputs)}" if cell.inputs else ""))
    for item in plan.inputs:
        where = "repository secret" if args.ci == "github" else "CI/CD variable (type File)"
        print(f"  add {where} {item.secret}: the manifest of {item.label}")
    for note in plan.notes:
        print(f"  note: {note}")
    return 0
