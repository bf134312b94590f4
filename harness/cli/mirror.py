"""`drdrill mirror prefetch|import|list|prune`: fill and tend the drill's registry mirror
(~/.cache/drdrill/mirror), which kind drills pull every image and chart from."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.config import Config
from harness.errors import ConfigError
from harness.mirror.server import MirrorRegistry, mirror_dir


def add_mirror_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mirror", help="the drill's registry mirror: prefetch, import, list, "
                                      "prune", description=__doc__)
    msub = p.add_subparsers(dest="mirror_command", required=True,
                            metavar="{prefetch,import,list,prune}")
    q = msub.add_parser("prefetch", help="copy every image and chart the repo names into the "
                                         "mirror (online; one result per item)")
    q.add_argument("--repo", type=Path, default=Path(), help="Flux Git repository (default .)")
    q.add_argument("--cluster", help="repo-relative folder of the cluster's Flux objects")
    q.add_argument("--refresh", action="store_true",
                   help="copy again even what the mirror has (moving tags)")
    q.add_argument("--json", action="store_true", help="print the results as JSON")
    q.set_defaults(func=_cmd_prefetch)
    q = msub.add_parser("import", help="copy an image of the local Docker engine, or a chart "
                                       "archive, into the mirror")
    what = q.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", help="a local Docker image (`docker save` is read)")
    what.add_argument("--chart", type=Path, help="a packaged chart (.tgz)")
    q.add_argument("--as", dest="as_ref",
                   help="image: the reference workloads use (default: --image itself); "
                        "chart: its repository URL (oci://host/path or https://host/path)")
    q.set_defaults(func=_cmd_import)
    q = msub.add_parser("list", help="what the mirror holds")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_cmd_list)
    q = msub.add_parser("prune", help="delete what the repo does not name (or everything), "
                                      "then collect unreferenced blobs")
    q.add_argument("--repo", type=Path, help="keep what this repo names")
    q.add_argument("--cluster", help="with --repo: the cluster folder")
    q.add_argument("--all", action="store_true", help="delete everything")
    q.add_argument("--dry-run", action="store_true", help="say what would be deleted")
    q.set_defaults(func=_cmd_prune)


@contextmanager
def _mirror(config: Config) -> Iterator[MirrorRegistry]:
    from harness.mirror import open_mirror
    from harness.mirror.server import storage_lock

    work = Path(tempfile.mkdtemp(prefix="drdrill-mirror-"))
    try:
        mirror = open_mirror(config, work_dir=work)
        with storage_lock(mirror.storage, exclusive=False), mirror:
            yield mirror
    finally:
        shutil.rmtree(work, ignore_errors=True)


def repo_wants(config: Config, repo: Path, cluster: str | None) -> Any:
    """The images and charts a repo's recovery pulls (preflight's rendering, offline)."""
    from harness.gitops.model import analyze
    from harness.gitops.preflight import default_cluster
    from harness.mirror.wants import collect
    from harness.tools import ensure_tools

    kustomize = ensure_tools(config, ("kustomize",))["kustomize"].path
    top = repo.resolve()
    model = analyze(top, cluster or default_cluster(top), kustomize=kustomize, collect=True)
    return collect(model.rendered)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _cmd_prefetch(args: argparse.Namespace) -> int:
    from harness.mirror.prefetch import ItemResult, Upstreams, prefetch, summary

    config = Config.from_env()
    wants = repo_wants(config, args.repo, args.cluster)
    for u in wants.unresolved:
        _say(f"cannot mirror: {u}")

    def line(r: ItemResult) -> None:
        size = f"{r.bytes / 1e6:.1f} MB" if r.bytes else ""
        _say(f"{r.outcome:<13} {r.kind:<5} {r.ref} {size}"
             + (f"\n              {r.error}" if r.error else ""))

    with _mirror(config) as mirror:
        results = prefetch(mirror.client(), wants.all(), Upstreams(),
                           platforms=mirror.platforms, refresh=args.refresh,
                           progress=None if args.json else line)
    data = summary(results)
    data["unresolved"] = list(wants.unresolved)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(", ".join(f"{n} {k}" for k, n in sorted(data["counts"].items())) or "nothing "
              "to fetch")
    return 0 if data["ok"] else 1


def _cmd_import(args: argparse.Namespace) -> int:
    from harness.mirror.artifacts import import_docker_image, push_chart
    from harness.mirror.refs import mirror_prefix, parse_image

    config = Config.from_env()
    with _mirror(config) as mirror:
        client = mirror.client()
        if args.image:
            ref = parse_image(args.as_ref or args.image)
            digest = import_docker_image(client, args.image, ref)
            print(f"imported {args.image} as {ref} ({ref.mirror_repository}@{digest})")
        else:
            if not args.as_ref:
                raise ConfigError("--chart needs --as with the chart repository URL the repo's "
                                  "HelmRepository/OCIRepository uses")
            repo, version, digest = push_chart(client, mirror_prefix(args.as_ref),
                                               args.chart.read_bytes())
            print(f"imported chart {args.chart.name} as {repo}:{version} ({digest})")
    return 0


def mirror_rows(client: Any) -> list[dict[str, str]]:
    from harness.mirror.oci import HELM_CONFIG

    rows = []
    for repo in sorted(client.catalog()):
        for tag in sorted(client.tags(repo)):
            m = client.get_manifest(repo, tag)
            kind = "index" if m.is_index else \
                "chart" if (m.doc.get("config") or {}).get("mediaType") == HELM_CONFIG else "image"
            rows.append({"repository": repo, "tag": tag, "kind": kind, "digest": m.digest})
    return rows


def _cmd_list(args: argparse.Namespace) -> int:
    config = Config.from_env()
    with _mirror(config) as mirror:
        rows = mirror_rows(mirror.client())
    if args.json:
        print(json.dumps(rows, indent=2))
    for r in [] if args.json else rows:
        print(f"{r['kind']:<5}  {r['repository']}:{r['tag']}  {r['digest'][:19]}")
    if not rows and not args.json:
        print(f"the mirror is empty ({mirror_dir(config)})")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from harness.mirror import open_mirror
    from harness.mirror.server import garbage_collect, storage_lock

    if not args.all and args.repo is None:
        raise ConfigError("say what to keep: --repo (keep what it names) or --all")
    config = Config.from_env()
    keep: set[tuple[str, str]] = set()
    if args.repo is not None:
        wants = repo_wants(config, args.repo, args.cluster)
        for w in wants.all():
            keep.add((w.item.mirror_repository, getattr(w.item, "tag", "")))
    deleted: list[str] = []
    with _mirror(config) as mirror:
        client = mirror.client()
        for row in mirror_rows(client):
            repo, tag = row["repository"], row["tag"]
            if (repo, tag) in keep or any(r == repo and not t for r, t in keep):
                continue  # a chart constraint keeps every version of its repository
            deleted.append(f"{repo}:{tag}")
            if not args.dry_run:
                client.delete_manifest(repo, row["digest"])
    for d in deleted:
        print(f"{'would delete' if args.dry_run else 'deleted'} {d}")
    if not args.dry_run and deleted:
        tmp = Path(tempfile.mkdtemp(prefix="drdrill-mirror-gc-"))
        try:
            gc = open_mirror(config, work_dir=tmp)
            with storage_lock(gc.storage, exclusive=True):
                garbage_collect(gc.binary, gc.storage, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(deleted)} {'would be ' if args.dry_run else ''}deleted")
    return 0
