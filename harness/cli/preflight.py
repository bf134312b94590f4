"""`drdrill preflight` and `drdrill inventory`: the repo checked offline in seconds (nothing
built but kustomize, no cluster code loaded)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.config import Config
from harness.errors import ConfigError, RepoError

LIGHT_COMMANDS = ("preflight", "inventory", "init")


def add_preflight_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, what in (("preflight", "check a Flux repo offline: renders, dependencies, "
                                     "manual inputs, external dependencies, what the drill "
                                     "cannot run (exit 0 clean/limited, 2 invalid/incomplete)"),
                       ("inventory", "list what a recovery of the repo needs from outside Git: "
                                     "manual inputs and external dependencies")):
        p = sub.add_parser(name, help=what, description=what)
        p.add_argument("--repo", type=Path, default=Path(), help="Flux Git repository "
                                                                 "(default .)")
        p.add_argument("--cluster", help="repo-relative folder of the cluster's Flux objects "
                                         "(default: the only one the repo syncs)")
        p.add_argument("--inputs", type=Path, help="folder of manifests for the manual inputs")
        p.add_argument("--revision", default="HEAD",
                       help="commit to read (default HEAD; the working tree is never read)")
        fmt = p.add_mutually_exclusive_group()
        fmt.add_argument("--json", dest="format", action="store_const", const="json",
                         help="print JSON")
        fmt.add_argument("--markdown", dest="format", action="store_const", const="markdown",
                         help="print Markdown (for a pull-request comment)")
        p.add_argument("--tools-dir", type=Path, help="folder with the pinned binaries")
        p.set_defaults(func=_cmd_preflight, format="text", inventory=name == "inventory")


def _resolvable(config: Config, tool: str) -> bool:
    """Whether a pinned binary is at hand (tools dir, PATH, cache), never building it."""
    from harness.tools import load_manifest, resolve_existing

    return resolve_existing(config, load_manifest().tools[tool]) is not None


def _cmd_preflight(args: argparse.Namespace) -> int:
    from harness.gitops import preflight as pf
    from harness.report.redact import redact, redact_data
    from harness.tools import ensure_tools

    config = Config.from_env(tools_dir=args.tools_dir)
    kustomize = ensure_tools(config, ("kustomize",), progress=lambda line: print(
        redact(line), file=sys.stderr))["kustomize"]
    try:
        data = pf.run_preflight(args.repo, args.cluster, args.inputs, kustomize=kustomize.path,
                                revision=args.revision,
                                runnable=lambda tool: _resolvable(config, tool))
    except (RepoError, ConfigError) as exc:
        data = pf.error_data(args.repo, args.cluster, exc)
    # The one redaction step, as for every report: this output goes into PR comments and CI
    # logs (a Git URL with a token in it must not).
    data = redact_data(data)
    if args.format == "json":
        out = json.dumps(data, indent=2) + "\n"
    elif args.format == "markdown":
        out = pf.render_markdown(data, inventory=args.inventory)
    else:
        out = pf.render_text(data, inventory=args.inventory)
    sys.stdout.write(out if args.format == "json" else redact(out))
    return pf.exit_code(data)
