"""What a recovery pulls: every image the rendered workloads and HelmRelease values name, every
chart the HelmReleases and OCIRepositories name. Offline: read from the preflight model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError
from harness.gitops.inputs import Obj, _containers
from harness.mirror.refs import ChartRef, ImageRef, parse_image

_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


@dataclass(frozen=True)
class Want:
    """One image or chart and the objects that need it."""

    item: ImageRef | ChartRef
    used_by: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "image" if isinstance(self.item, ImageRef) else "chart"


@dataclass(frozen=True)
class Wants:
    images: tuple[Want, ...]
    charts: tuple[Want, ...]
    unresolved: tuple[str, ...]
    """References that cannot be mirrored as written (a variable left in, a chart from a
    GitRepository), each with the object that names it."""

    def all(self) -> tuple[Want, ...]:
        return self.images + self.charts


def _value_images(node: Any) -> Iterator[str]:
    """Images in Helm values: `image: host/repo:tag` strings and `repository:` + `tag:` pairs."""
    if isinstance(node, Mapping):
        repo = node.get("repository")
        if isinstance(repo, str) and "/" in repo and " " not in repo:
            registry = node.get("registry")
            name = f"{registry}/{repo}" if isinstance(registry, str) and registry else repo
            tag = node.get("tag")
            digest = node.get("digest")
            if isinstance(digest, str) and digest.startswith("sha256:"):
                yield f"{name}@{digest}"
            elif isinstance(tag, str | int | float) and str(tag):
                yield f"{name}:{tag}"
        for key, value in node.items():
            if key == "image" and isinstance(value, str) and "/" in value and " " not in value:
                yield value
            else:
                yield from _value_images(value)
    elif isinstance(node, list):
        for value in node:
            yield from _value_images(value)


def collect(objs: Iterable[Obj]) -> Wants:
    objs = list(objs)
    images: dict[ImageRef, list[str]] = {}
    charts: dict[ChartRef, list[str]] = {}
    unresolved: list[str] = []
    sources = {(o.kind, o.namespace, o.name): o for o in objs
               if o.kind in ("HelmRepository", "OCIRepository")}

    def image(text: str, by: str) -> None:
        try:
            ref = parse_image(text)
        except ConfigError as exc:
            unresolved.append(f"{text} ({by}): {exc.message}")
            return
        images.setdefault(ref, [])
        if by not in images[ref]:
            images[ref].append(by)

    def chart(ref: ChartRef, by: str) -> None:
        users = charts.setdefault(ref, [])
        if by not in users:
            users.append(by)

    for o in objs:
        if o.kind in _WORKLOADS:
            for c in _containers(o.doc):
                if isinstance(c.get("image"), str):
                    image(c["image"], o.ref)
        elif o.kind == "HelmRelease":
            spec: Mapping[str, Any] = o.doc.get("spec") or {}
            for text in _value_images(spec.get("values")):
                image(text, o.ref)
            _helm_chart(o, spec, sources, chart, unresolved)
        elif o.kind == "OCIRepository":
            ref = _oci_chart(o)
            if ref is not None:
                chart(ref, o.ref)
    return Wants(tuple(Want(k, tuple(v)) for k, v in sorted(images.items())),
                 tuple(Want(k, tuple(v)) for k, v in sorted(charts.items())),
                 tuple(dict.fromkeys(unresolved)))


def _oci_chart(o: Obj) -> ChartRef | None:
    spec: Mapping[str, Any] = o.doc.get("spec") or {}
    url = str(spec.get("url") or "")
    if not url.startswith("oci://"):
        return None
    ref: Mapping[str, Any] = spec.get("ref") or {}
    base, _, name = url.rstrip("/").rpartition("/")
    version = str(ref.get("digest") or ref.get("tag") or ref.get("semver") or "latest")
    return ChartRef(base, name, version)


def _helm_chart(o: Obj, spec: Mapping[str, Any], sources: Mapping[tuple[str, str, str], Obj],
                chart: Any, unresolved: list[str]) -> None:
    tmpl: Mapping[str, Any] = (spec.get("chart") or {}).get("spec") or {}
    if not tmpl:
        return  # spec.chartRef: the OCIRepository it points at is collected on its own
    src: Mapping[str, Any] = tmpl.get("sourceRef") or {}
    key = (str(src.get("kind", "")), str(src.get("namespace") or o.namespace),
           str(src.get("name", "")))
    name = str(tmpl.get("chart") or "")
    if key[0] != "HelmRepository":
        unresolved.append(f"chart {name} ({o.ref}): from a {key[0] or 'missing source'}, "
                          "which is Git content, not a registry")
        return
    repo = sources.get(key)
    if repo is None:
        unresolved.append(f"chart {name} ({o.ref}): HelmRepository {key[1]}/{key[2]} is "
                          "not in the repository")
        return
    url = str((repo.doc.get("spec") or {}).get("url") or "").rstrip("/")
    if not url or "${" in url or "${" in name:
        unresolved.append(f"chart {name} ({o.ref}): source URL {url!r} is not literal")
        return
    chart(ChartRef(url, name, str(tmpl.get("version") or "*")), o.ref)
