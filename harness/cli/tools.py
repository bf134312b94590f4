"""`drdrill tools ensure|list`: resolve (and if needed build) the pinned binaries, or show them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.tools import ALL_TOOL_NAMES, ON_DEMAND_TOOLS, ensure_tools, flux_crds, list_tools


def add_tools_commands(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Register `tools ensure` and `tools list` on a CLI's subparsers; each sets `func(args)`."""
    tools: argparse.ArgumentParser = subparsers.add_parser(
        "tools", help="the pinned binaries: find or build them, list where they come from",
        description="Binaries are pinned in harness/tools.toml and resolved in this order: "
                    "--tools-dir (DRDRILL_TOOLS_DIR), PATH at the pinned version, the cache, "
                    "a build from the Go module proxy with the machine's Go.")
    sub = tools.add_subparsers(dest="tools_command", metavar="{ensure,list,pack,unpack,pins}",
                               required=True)

    ensure = sub.add_parser("ensure", help="resolve every pinned binary, building missing ones")
    ensure.add_argument("--tools-dir", type=Path, metavar="DIR",
                        help="a folder holding the pinned binaries (checked first)")
    ensure.add_argument("--only", nargs="+", action="extend", metavar="NAME",
                        choices=ALL_TOOL_NAMES,
                        help="only these tools (default: all but the kind node's and the "
                             f"on-demand {', '.join(ON_DEMAND_TOOLS)})")
    ensure.set_defaults(func=cmd_ensure)

    listing = sub.add_parser("list", help="show where each pinned binary resolves; never builds")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.add_argument("--tools-dir", type=Path, metavar="DIR",
                         help="a folder holding the pinned binaries (checked first)")
    listing.set_defaults(func=cmd_list)

    packing = sub.add_parser("pack", help="write the resolved tools and Flux CRDs into one "
                                          "archive (a CI cache, an air-gapped machine); never "
                                          "builds")
    packing.add_argument("archive", type=Path, metavar="FILE.tar.gz")
    packing.add_argument("--only", nargs="+", action="extend", metavar="NAME",
                         choices=ALL_TOOL_NAMES, help="only these tools (default: those "
                                                      "`tools ensure` resolves)")
    packing.add_argument("--tools-dir", type=Path, metavar="DIR",
                         help="a folder holding the pinned binaries (checked first)")
    packing.set_defaults(func=cmd_pack)
    unpacking = sub.add_parser("unpack", help="check every sum and version in an archive of "
                                              "`tools pack`, then put it into the cache")
    unpacking.add_argument("archive", type=Path, metavar="FILE.tar.gz")
    unpacking.set_defaults(func=cmd_unpack)

    pins = sub.add_parser("pins", help="print a digest of every pin (a CI cache key that "
                                       "changes whenever a pinned version does)")
    pins.set_defaults(func=cmd_pins)
    return tools


def cmd_pack(args: argparse.Namespace) -> int:
    from harness.tools.pack import pack

    index = pack(Config.from_env(tools_dir=args.tools_dir), args.archive, args.only,
                 progress=_progress)
    print(f"{args.archive}: {len(index['tools'])} tools"
          + (", the Flux CRDs" if index["flux_crds"] else "") + f" (pins {index['pins']})")
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from harness.tools.pack import unpack

    installed = unpack(Config.from_env(), args.archive, progress=_progress)
    print(f"{args.archive}: {len(installed)} tools into the cache")
    return 0


def cmd_pins(args: argparse.Namespace) -> int:
    from harness.tools import pins_digest

    print(pins_digest())
    return 0


def _progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def cmd_ensure(args: argparse.Namespace) -> int:
    """Resolve the tools (and the Flux CRDs when all tools are wanted); print one line each."""
    config = Config.from_env(tools_dir=args.tools_dir)
    only: list[str] | None = args.only
    resolved = ensure_tools(config, only, progress=_progress)
    width = max(len(n) for n in resolved)
    for tool in resolved.values():
        print(f"{tool.name:<{width}}  {tool.version:<9}  {tool.source:<5}  {tool.path}")
    if only is None:
        crds = flux_crds(config, progress=_progress)
        print(f"{'flux-crds':<{width}}  {len(crds)} files in {crds[0].parent}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print where each tool resolves; exit 1 if any is missing."""
    rows = list_tools(Config.from_env(tools_dir=args.tools_dir))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(str(r["name"])) for r in rows)
        for r in rows:
            where = r["path"] or next(iter((r["error"] or "").splitlines()), "") or "-"
            print(f"{r['name']:<{width}}  {r['version']:<9}  {r['source']:<7}  {where}")
    # The benchmark's and the CI check's tools are built on demand: missing is not broken.
    return 0 if all(r["source"] != "missing" for r in rows if r["name"] not in ON_DEMAND_TOOLS) \
        else 1
