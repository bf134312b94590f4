"""`drdrill kind-image build|show`: the kind node image drdrill builds offline (cached)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from harness.config import Config


def add_kind_image_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "kind-image", help="the kind node image built here offline: build it, or show its tag",
        description="drdrill's kind node image (Debian rootfs, the pinned kubelet/kubeadm, "
                    "kubeadm's component images) is built from Debian's packages and the Go "
                    "module proxy, cached by the hash of its inputs; the kind provider builds "
                    "it when needed, this command ahead of time.")
    sub = p.add_subparsers(dest="kind_image_command", metavar="{build,show}", required=True)
    build = sub.add_parser("build", help="build the node image unless the cached one is current")
    build.add_argument("--force", action="store_true", help="rebuild even if it is cached")
    build.set_defaults(func=cmd_build)
    show = sub.add_parser("show", help="print the tag the pinned inputs give (builds binaries)")
    show.set_defaults(func=cmd_show)


def _progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    from harness.images.kind_node import ensure_node_image

    built = ensure_node_image(Config.from_env(), progress=_progress, force=args.force)
    state = f"built in {built.built_s:.0f}s" if built.built_s else "cached"
    print(f"{built.tag}  ({state}; log: {built.log})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from harness.images.kind_node import resolve_inputs
    from harness.images.rootfs import image_exists

    config = Config.from_env()
    log = config.cache_dir / "images" / "logs" / "kind-node.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    tag = resolve_inputs(config, log, _progress).tag()
    print(f"{tag}  ({'present' if image_exists(tag) else 'not built'})")
    return 0
