"""Thin helpers over the official Kubernetes client: an ApiClient per cluster, server-side apply."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential
from urllib3.exceptions import HTTPError as Urllib3Error

from harness.errors import ManifestError, ProviderError

log = logging.getLogger(__name__)

FIELD_MANAGER = "drdrill"


def api_client(kubeconfig: Path) -> Any:
    """A client bound to one kubeconfig; never touches the process-wide default config."""
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))


@dataclass(frozen=True)
class Resource:
    group_version: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        ns = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{ns}/{self.plural}" + (f"/{name}" if name else "")


class RestMapper:
    """kind -> resource by asking the apiserver's discovery for one group-version at a time."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self._cache: dict[str, dict[str, Resource]] = {}

    def resource(self, api_version: str, kind: str) -> Resource:
        kinds = self._cache.get(api_version)
        if kinds is None or kind not in kinds:
            kinds = self._discover(api_version)
        if kind not in kinds:
            raise ManifestError(f"the cluster has no kind {kind} in {api_version}",
                                obj=f"{api_version}/{kind}",
                                fix="install the CRD that defines it, or fix apiVersion/kind")
        return kinds[kind]

    def _discover(self, api_version: str) -> dict[str, Resource]:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            data = request(self.api, "GET", path)
        except ApiException as exc:
            if exc.status == 404:
                data = {"resources": []}
            else:
                raise
        kinds = {
            r["kind"]: Resource(api_version, r["name"], bool(r["namespaced"]))
            for r in data.get("resources", [])
            if "/" not in r["name"]
        }
        self._cache[api_version] = kinds
        return kinds


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the connection dropped, the apiserver is busy (429) or failing (5xx)."""
    if isinstance(exc, ApiException):
        return exc.status in (0, 429) or (exc.status or 0) >= 500
    return isinstance(exc, (Urllib3Error, ConnectionError, TimeoutError))


def retrying(*, budget_s: float = 30.0, deadline: float | None = None) -> Retrying:
    """Bounded retries for transient API errors; never past `deadline` (time.monotonic)."""
    if deadline is not None:
        budget_s = min(budget_s, max(0.0, deadline - time.monotonic()))
    stop = stop_after_delay(budget_s)
    return Retrying(retry=retry_if_exception(is_transient), stop=stop, reraise=True,
                    wait=wait_exponential(multiplier=0.1, max=2.0),
                    before_sleep=lambda rs: log.debug("retrying after %s", rs.outcome and
                                                      rs.outcome.exception()))


def request(api: Any, method: str, path: str, *, body: Any = None,
            query: list[tuple[str, str]] | None = None, content_type: str | None = None,
            timeout_s: float = 30, retry_budget_s: float = 30.0) -> Any:
    """One API call returning decoded JSON (ApiException on HTTP errors); transient errors are
    retried within `retry_budget_s` (server-side apply is idempotent, GETs are safe)."""
    for attempt in retrying(budget_s=retry_budget_s):
        with attempt:
            return _request_once(api, method, path, body=body, query=query,
                                 content_type=content_type, timeout_s=timeout_s)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def _request_once(api: Any, method: str, path: str, *, body: Any,
                  query: list[tuple[str, str]] | None, content_type: str | None,
                  timeout_s: float) -> Any:
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    serialized = api.param_serialize(method=method, resource_path=path, query_params=query or [],
                                     header_params=headers, body=body,
                                     auth_settings=["BearerToken"])
    resp = api.call_api(*serialized, _request_timeout=timeout_s)
    raw = resp.read()
    if not 200 <= resp.status < 300:
        raise ApiException(http_resp=resp)
    return json.loads(raw) if raw else {}


def apply(api: Any, mapper: RestMapper, obj: dict[str, Any], *, source: str = "") -> Any:
    """Server-side apply one object (force: drdrill owns what it applies)."""
    kind = obj.get("kind", "?")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name or "apiVersion" not in obj:
        raise ManifestError("manifest lacks apiVersion, kind or metadata.name", file=source or None,
                            obj=f"{kind}/{name}", fix="give every manifest apiVersion, kind and "
                                                     "metadata.name")
    res = mapper.resource(obj["apiVersion"], kind)
    namespace = meta.get("namespace") or ("default" if res.namespaced else None)
    if res.namespaced:
        obj = {**obj, "metadata": {**meta, "namespace": namespace}}
    return request(api, "PATCH", res.path(namespace, name), body=obj,
                   query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                   content_type="application/apply-patch+yaml")


def apply_all(api: Any, docs: Iterable[dict[str, Any]], *, source: str = "") -> int:
    mapper = RestMapper(api)
    count = 0
    for doc in docs:
        apply(api, mapper, doc, source=source)
        count += 1
    return count


# libyaml's loader where the wheel has it: the Flux CRDs alone are megabytes of YAML.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml_all(text: str) -> list[Any]:
    """Every document of a YAML stream, with the fastest safe loader available."""
    return list(yaml.load_all(text, Loader=_Loader))


def load_yaml_docs(path: Path) -> Iterator[dict[str, Any]]:
    """The non-empty documents of a YAML file; ManifestError (file named) on bad YAML."""
    try:
        docs = parse_yaml_all(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ManifestError(yaml_problem(exc), file=path,
                            fix="fix the YAML syntax (check indentation and brackets)") from exc
    for doc in docs:
        if isinstance(doc, dict) and doc:
            if doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
                yield from (d for d in doc["items"] if isinstance(d, dict))
            else:
                yield doc


def yaml_problem(exc: yaml.YAMLError) -> str:
    """`invalid YAML at line L, column C: <problem>` (1-based, as editors count)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {problem}"


def ensure_namespace(api: Any, name: str) -> None:
    apply_all(api, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])


def wait_crds_established(api: Any, names: Iterable[str], *, timeout_s: float) -> None:
    """Block until each CRD reports Established (watch on the CRD list)."""
    from kubernetes import watch

    pending = set(names)
    ext = k8s.ApiextensionsV1Api(api)
    w = watch.Watch()
    def established(crd: Any) -> bool:
        return any(c.type == "Established" and c.status == "True"
                   for c in (crd.status.conditions or []))
    listing = ext.list_custom_resource_definition()
    pending -= {c.metadata.name for c in listing.items if established(c)}
    if not pending:
        return
    for event in w.stream(ext.list_custom_resource_definition,
                          resource_version=listing.metadata.resource_version,
                          timeout_seconds=max(1, int(timeout_s))):
        crd = event["object"]
        if established(crd):
            pending.discard(crd.metadata.name)
        if not pending:
            w.stop()
            return
    raise ProviderError(f"CRDs not established within {timeout_s:.0f}s: {sorted(pending)}")
