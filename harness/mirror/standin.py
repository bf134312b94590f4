"""A stand-in for the internet's registries where none is reachable (tests, the offline
benchmark): a second pinned registry on loopback seeded with images made from what drdrill
builds (busybox from the kind node rootfs) and charts packaged from a folder, plus an https-style
Helm repository served over local HTTP. `Upstreams` maps the public names to it; nothing in
a drill or the CLI does."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml

from harness.config import Config
from harness.mirror.artifacts import chart_metadata, push_chart, push_docker_archive
from harness.mirror.prefetch import Upstreams
from harness.mirror.server import MirrorRegistry


class _ChartRepo(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


def busybox_archive(config: Config, dest: Path) -> Path:
    """Debian's busybox-static from the kind node rootfs (debootstrap, cached with the node
    image) as a docker-archive image (it has httpd, sh, sleep, nslookup, wget)."""
    from harness.images.kind_node import NODE_ROOTFS, Component, write_component
    from harness.images.rootfs import debootstrap_rootfs

    images = config.cache_dir / "images"
    rootfs = debootstrap_rootfs(NODE_ROOTFS, images, images / "logs" / "kind-node.log")
    comp = Component("drdrill/standin-busybox:1", "busybox", path="bin/busybox", packages=())
    return write_component(comp, rootfs / "bin/busybox", rootfs, dest, dest.parent / "work")


@dataclass(frozen=True)
class StandIn:
    upstreams: Upstreams
    registry: MirrorRegistry


@contextmanager
def stand_in(config: Config, work: Path, *, images: Mapping[str, Path],
             oci_charts: Mapping[str, bytes], http_charts: Mapping[str, bytes],
             hosts: Mapping[str, str]) -> Iterator[StandIn]:
    """Serve `images` (`host/repo:tag` -> docker archive), `oci_charts` (`host/path` -> .tgz)
    and `http_charts` (`https://host/path` -> .tgz, with an index.yaml) until the block ends;
    `hosts` maps each public host to "oci" or "http"."""
    from harness.tools import MIRROR_TOOLS, ensure_tools

    binary = ensure_tools(config, MIRROR_TOOLS)["registry"].path
    files: dict[str, bytes] = {}
    entries: dict[str, dict[str, list[dict[str, object]]]] = {}
    for url, tgz in http_charts.items():
        path = "/" + url.split("://", 1)[1].split("/", 1)[1].strip("/")
        meta = chart_metadata(tgz)
        name = f"{meta['name']}-{meta['version']}.tgz"
        files[f"{path}/{name}"] = tgz
        index = entries.setdefault(path, {})
        index.setdefault(str(meta["name"]), []).append(
            {"name": meta["name"], "version": str(meta["version"]), "urls": [name]})
    for path, index in entries.items():
        files[f"{path}/index.yaml"] = yaml.safe_dump({"apiVersion": "v1",
                                                      "entries": index}).encode()
    _ChartRepo.files = files
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ChartRepo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with MirrorRegistry(binary, work / "storage", work / "work",
                            f"standin-{uuid.uuid4().hex[:6]}") as registry:
            up = registry.client()
            for ref, archive in images.items():
                name, _, tag = ref.rpartition(":")
                push_docker_archive(up, archive, name.split("/", 1)[1], tag)
            for prefix, chart in oci_charts.items():
                push_chart(up, prefix.split("/", 1)[1], chart)
            http_url = f"http://127.0.0.1:{server.server_address[1]}"
            yield StandIn(Upstreams({h: registry.url if kind == "oci" else http_url
                                     for h, kind in hosts.items()}), registry)
    finally:
        server.shutdown()
        server.server_close()
