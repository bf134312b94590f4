"""A small client of the OCI distribution HTTP API (manifests, blobs, tags, catalog), enough to
copy images and charts between registries; anonymous bearer tokens for public registries."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness.errors import (
    ArtifactNotFound,
    MirrorError,
    RegistryAuthError,
    RegistryRateLimited,
    RegistryUnreachable,
)

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
CHUNK = 1 << 20


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Manifest:
    body: bytes
    media_type: str
    digest: str

    @property
    def doc(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class Registry:
    """One registry at `base_url` (`https://ghcr.io`, `http://127.0.0.1:5000`)."""

    def __init__(self, base_url: str, *, name: str | None = None, timeout_s: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name or urllib.parse.urlsplit(self.base_url).netloc
        self.timeout_s = timeout_s
        self._tokens: dict[str, str] = {}
        self.bytes_in = 0

    # -- transport -----------------------------------------------------------------------
    def _open(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
              data: bytes | IO[bytes] | None = None, scope: str = "",
              ok: tuple[int, ...] = (200,)) -> Any:
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        hdrs = dict(headers or {})
        for attempt in range(2):
            token = self._tokens.get(scope)
            if token:
                hdrs["Authorization"] = f"Bearer {token}"
            # Only http(s) URLs reach here: base_url and Location headers of a registry.
            req = urllib.request.Request(url, data=data, method=method, headers=hdrs)  # noqa: S310
            try:
                resp = urllib.request.urlopen(req, timeout=self.timeout_s)  # noqa: S310
            except urllib.error.HTTPError as exc:
                if exc.code in ok:
                    return exc
                challenge = exc.headers.get("WWW-Authenticate", "")
                if exc.code == 401 and attempt == 0 and challenge.lower().startswith("bearer"):
                    self._tokens[scope] = self._token(challenge, scope, url)
                    if hasattr(data, "seek"):
                        data.seek(0)  # type: ignore[union-attr]
                    continue
                raise http_error(self.name, exc, method, url) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise RegistryUnreachable(f"registry {self.name} does not answer {method} {url}: "
                                          f"{reason}", url=url,
                                          fix="check the address, or that the mirror/stand-in "
                                              "is running") from None
            if resp.status not in ok:
                raise MirrorError(f"{method} {url}: unexpected HTTP {resp.status}", url=url,
                                  status=resp.status)
            return resp
        raise RegistryAuthError(f"registry {self.name} refused the token it issued for {url}",
                                url=url, status=401)

    def _token(self, challenge: str, scope: str, url: str) -> str:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryAuthError(f"registry {self.name} wants credentials for {url} "
                                    f"({challenge})", url=url, status=401)
        if scope and "scope" not in params:
            params["scope"] = scope
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{realm}?{query}", timeout=self.timeout_s) as resp:  # noqa: S310
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise http_error(self.name, exc, "GET", realm) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RegistryUnreachable(f"the token service of {self.name} ({realm}) failed: "
                                      f"{exc}", url=realm) from None
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise RegistryAuthError(f"the token service of {self.name} gave no token",
                                    url=realm, status=401)
        return token

    # -- API -------------------------------------------------------------------------------
    def ping(self) -> None:
        with self._open("GET", "/v2/"):
            pass

    def get_manifest(self, repo: str, reference: str, *, accept: str = ACCEPT) -> Manifest:
        scope = f"repository:{repo}:pull"
        with self._open("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept},
                        scope=scope) as resp:
            body = resp.read()
            media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        self.bytes_in += len(body)
        media = json.loads(body).get("mediaType") or media
        return Manifest(body, media, sha256_digest(body))

    def head_manifest(self, repo: str, reference: str) -> str | None:
        """The digest of `repo:reference`, or None if there is none."""
        try:
            with self._open("HEAD", f"/v2/{repo}/manifests/{reference}",
                            headers={"Accept": ACCEPT},
                            scope=f"repository:{repo}:pull") as resp:
                return str(resp.headers.get("Docker-Content-Digest") or "") or None
        except ArtifactNotFound:
            return None

    def put_manifest(self, repo: str, reference: str, manifest: Manifest) -> str:
        with self._open("PUT", f"/v2/{repo}/manifests/{reference}", data=manifest.body,
                        headers={"Content-Type": manifest.media_type},
                        scope=f"repository:{repo}:push,pull", ok=(201, 200)) as resp:
            return str(resp.headers.get("Docker-Content-Digest") or manifest.digest)

    def delete_manifest(self, repo: str, digest: str) -> None:
        with self._open("DELETE", f"/v2/{repo}/manifests/{digest}",
                        scope=f"repository:{repo}:delete", ok=(202, 200)):
            pass

    def has_blob(self, repo: str, digest: str) -> bool:
        try:
            with self._open("HEAD", f"/v2/{repo}/blobs/{digest}",
                            scope=f"repository:{repo}:pull"):
                return True
        except ArtifactNotFound:
            return False

    def fetch_blob(self, repo: str, digest: str, out: IO[bytes]) -> int:
        """Stream a blob into `out`, verifying its digest; returns its size."""
        algo, _, want = digest.partition(":")
        if algo != "sha256":
            raise MirrorError(f"blob {digest} of {repo}: only sha256 digests are supported")
        h = hashlib.sha256()
        size = 0
        with self._open("GET", f"/v2/{repo}/blobs/{digest}",
                        scope=f"repository:{repo}:pull") as resp:
            while chunk := resp.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
        self.bytes_in += size
        if h.hexdigest() != want:
            raise MirrorError(f"blob {digest} of {repo} from {self.name} has digest "
                              f"sha256:{h.hexdigest()}: corrupt or tampered download")
        return size

    def push_blob(self, repo: str, digest: str, data: IO[bytes], size: int) -> None:
        """Monolithic upload (POST, then PUT with the digest); nothing if it is already there."""
        if self.has_blob(repo, digest):
            return
        scope = f"repository:{repo}:push,pull"
        with self._open("POST", f"/v2/{repo}/blobs/uploads/", scope=scope,
                        ok=(202,)) as resp:
            location = resp.headers.get("Location", "")
        if not location:
            raise MirrorError(f"registry {self.name} gave no upload location for {repo}")
        location = urllib.parse.urljoin(self.base_url + "/", location)
        sep = "&" if "?" in location else "?"
        with self._open("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", data=data,
                        headers={"Content-Type": "application/octet-stream",
                                 "Content-Length": str(size)}, scope=scope, ok=(201,)):
            pass

    def push_bytes(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        self.push_blob(repo, digest, io.BytesIO(data), len(data))
        return digest

    def tags(self, repo: str) -> list[str]:
        return list(self._paged(f"/v2/{repo}/tags/list", "tags", f"repository:{repo}:pull"))

    def catalog(self) -> list[str]:
        return list(self._paged("/v2/_catalog?n=1000", "repositories", "registry:catalog:*"))

    def _paged(self, path: str, key: str, scope: str) -> Iterator[str]:
        next_path: str | None = path
        while next_path:
            try:
                with self._open("GET", next_path, scope=scope) as resp:
                    body = json.loads(resp.read())
                    link = resp.headers.get("Link", "")
            except ArtifactNotFound:
                return
            yield from body.get(key) or []
            match = re.match(r"<([^>]+)>", link)
            next_path = match.group(1) if match else None


def http_error(name: str, exc: urllib.error.HTTPError, method: str, url: str) -> MirrorError:
    """The named error for an HTTP error answer of registry `name` (429, 401/403, 404)."""
    detail = ""
    with contextlib.suppress(OSError):
        detail = exc.read(2048).decode(errors="replace").strip()
    what = f"{method} {url}: HTTP {exc.code}" + (f" {detail[:300]}" if detail else "")
    if exc.code == 429:
        err = RegistryRateLimited(f"registry {name} rate-limited the request ({what})",
                                  url=url, status=429,
                                  fix="wait for the limit to reset, pull with an account, "
                                      "or fill the mirror from elsewhere "
                                      "(`drdrill mirror import`)")
        retry = exc.headers.get("Retry-After", "")
        err.retry_after_s = float(retry) if retry.isdigit() else None
        return err
    if exc.code in (401, 403):
        return RegistryAuthError(f"registry {name} requires authentication ({what})",
                                 url=url, status=exc.code,
                                 fix="the content is private: import it into the mirror "
                                     "from a machine that can pull it")
    if exc.code == 404:
        return ArtifactNotFound(f"not found in {name} ({what})", url=url, status=404)
    return MirrorError(f"registry {name} failed: {what}", url=url, status=exc.code)


def copy_blob(src: Registry, src_repo: str, dst: Registry, dst_repo: str, digest: str) -> int:
    """Copy one blob through a spooled temp file; returns the bytes moved (0 if present)."""
    if dst.has_blob(dst_repo, digest):
        return 0
    with tempfile.SpooledTemporaryFile(max_size=32 * CHUNK) as tmp:
        size = src.fetch_blob(src_repo, digest, tmp)
        tmp.seek(0)
        dst.push_blob(dst_repo, digest, tmp, size)
    return size


def copy_file_blob(dst: Registry, repo: str, path: Path) -> tuple[str, int]:
    """Push a local file as a blob; (digest, size)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    size = path.stat().st_size
    with path.open("rb") as fh:
        dst.push_blob(repo, digest, fh, size)
    return digest, size


def copy_tree(src: Registry, src_repo: str, reference: str, dst: Registry, dst_repo: str,
              tag: str, *, platforms: tuple[str, ...]) -> tuple[Manifest, int]:
    """Copy a manifest (an index: only the children for `platforms`, e.g. 'linux/amd64') with
    every blob it names, then tag it; (top manifest as pushed, bytes moved)."""
    top = src.get_manifest(src_repo, reference)
    moved = 0
    if top.is_index:
        doc = top.doc
        kept = [m for m in doc.get("manifests") or [] if _platform(m) in platforms]
        if not kept:
            have = ", ".join(sorted({_platform(m) for m in doc.get("manifests") or []}))
            raise ArtifactNotFound(f"{src.name}/{src_repo}:{reference} has no image for "
                                   f"{' or '.join(platforms)} (it has: {have or 'none'})")
        for child in kept:
            moved += _copy_single(src, src_repo, child["digest"], dst, dst_repo)
    else:
        moved += _copy_single(src, src_repo, top.digest, dst, dst_repo, manifest=top)
    dst.put_manifest(dst_repo, tag, top)
    return top, moved


def _platform(entry: Mapping[str, Any]) -> str:
    plat = entry.get("platform") or {}
    return f"{plat.get('os', '')}/{plat.get('architecture', '')}"


def _copy_single(src: Registry, src_repo: str, digest: str, dst: Registry, dst_repo: str, *,
                 manifest: Manifest | None = None) -> int:
    m = manifest or src.get_manifest(src_repo, digest)
    if m.digest != digest and manifest is None:
        raise MirrorError(f"manifest {digest} of {src.name}/{src_repo} has digest {m.digest}")
    doc = m.doc
    moved = 0
    for blob in [doc.get("config") or {}, *(doc.get("layers") or [])]:
        if blob.get("digest"):
            moved += copy_blob(src, src_repo, dst, dst_repo, blob["digest"])
    dst.put_manifest(dst_repo, digest, m)
    return moved


