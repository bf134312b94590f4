"""Image and chart references as the container runtime and Flux resolve them, and where each
lives in the mirror (`<registry>/<repository>`, so ghcr.io/a/b and docker.io/a/b never meet)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from harness.errors import ConfigError

DOCKER_HUB = "docker.io"
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True, order=True)
class ImageRef:
    """`registry/repository[:tag][@digest]`, normalised (docker.io, library/, latest)."""

    registry: str
    repository: str
    tag: str = "latest"
    digest: str = ""

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag

    @property
    def mirror_repository(self) -> str:
        return f"{mirror_host_segment(self.registry)}/{self.repository}"

    def __str__(self) -> str:
        tail = f":{self.tag}" if self.tag and not (self.digest and self.tag == "latest") else ""
        return f"{self.registry}/{self.repository}{tail}" + (f"@{self.digest}" if self.digest
                                                               else "")


def mirror_host_segment(registry: str) -> str:
    """A registry host as one path segment of a mirror repository (`host:5000` -> `host-5000`,
    since repository names cannot hold a colon)."""
    return registry.lower().replace(":", "-")


def parse_image(text: str) -> ImageRef:
    """Parse an image reference the way containerd's docker resolver normalises it."""
    raw = text.strip()
    if not raw or any(c.isspace() for c in raw) or "${" in raw:
        raise ConfigError(f"not an image reference: {text!r}")
    name, _, digest = raw.partition("@")
    if digest and not _DIGEST.match(digest):
        raise ConfigError(f"image {text!r}: {digest!r} is not a digest")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, name
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    tag = ""
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not _TAG.match(tag):
            raise ConfigError(f"image {text!r}: {tag!r} is not a tag")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not path or path != path.lower():
        raise ConfigError(f"image {text!r}: the repository must be lower case and not empty")
    return ImageRef(registry, path, tag or "latest", digest)


@dataclass(frozen=True, order=True)
class ChartRef:
    """A chart version a HelmRelease (or OCIRepository) asks for, at its source."""

    source_url: str
    """`oci://host/path` of the chart's repository, or the HelmRepository's https URL."""
    name: str
    version: str
    """A version or semver constraint as the HelmRelease writes it ('' / '*' = latest)."""

    @property
    def is_oci(self) -> bool:
        return self.source_url.startswith("oci://")

    @property
    def mirror_repository(self) -> str:
        """Where the chart lives in the mirror: the source's host and path, then the name."""
        return f"{mirror_prefix(self.source_url)}/{self.name}".strip("/")

    def __str__(self) -> str:
        return f"{self.source_url.rstrip('/')}/{self.name}:{self.version or '*'}"


def mirror_prefix(url: str) -> str:
    """The mirror path for a chart source URL: `oci://ghcr.io/org/charts` and
    `https://charts.example.com/stable` -> `ghcr.io/org/charts`, `charts.example.com/stable`."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ConfigError(f"not a chart source URL: {url!r}")
    host = mirror_host_segment(parts.netloc.rsplit("@", 1)[-1])
    path = "/".join(p for p in parts.path.lower().split("/") if p)
    return f"{host}/{path}" if path else host
