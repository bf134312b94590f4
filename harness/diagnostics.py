"""Collect what explains a drill before teardown: Flux objects, events, component logs."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from harness.providers import ClusterProvider
from harness.report.redact import write_report_file

log = logging.getLogger(__name__)

FLUX_RESOURCES = (
    ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations"),
    ("source.toolkit.fluxcd.io", "v1", "gitrepositories"),
    ("source.toolkit.fluxcd.io", "v1", "helmcharts"),
    ("helm.toolkit.fluxcd.io", "v2", "helmreleases"),
)


def collect_diagnostics(provider: ClusterProvider, api: Any, report_dir: Path,
                        label: str, scratch: Path) -> dict[str, str]:
    """Write diagnostics under `report_dir/diagnostics/<label>/`; return label -> relative path.

    The provider dumps its logs into `scratch` (the run's own 0700 folder, removed with it);
    each file reaches the report folder only through the redaction step, never raw first.
    Each part is best effort: one that fails is logged and the others are still collected."""
    out = report_dir / "diagnostics" / label
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if api is not None:
        custom = k8s.CustomObjectsApi(api)
        for group, version, plural in FLUX_RESOURCES:
            try:
                items = custom.list_cluster_custom_object(group, version, plural)["items"]
                for item in items:
                    (item.get("metadata") or {}).pop("managedFields", None)
                path = out / f"{plural}.yaml"
                write_report_file(path, yaml.safe_dump_all(items, sort_keys=False))
                written[f"{label}/{plural}"] = path
            except Exception as exc:  # noqa: BLE001 - best effort, see docstring
                log.warning("diagnostics: listing %s failed: %s", plural, exc)
        try:
            events = k8s.CoreV1Api(api).list_event_for_all_namespaces(_request_timeout=10).items
            lines = [f"{e.last_timestamp or e.event_time} {e.type} {e.involved_object.kind}/"
                     f"{e.involved_object.namespace}/{e.involved_object.name} {e.reason}: "
                     f"{e.message}" for e in events]
            path = out / "events.txt"
            write_report_file(path, "\n".join(sorted(lines, key=str)) + "\n")
            written[f"{label}/events"] = path
        except Exception as exc:  # noqa: BLE001
            log.warning("diagnostics: listing events failed: %s", exc)
    try:
        dumped = provider.dump_logs(scratch)
    except Exception as exc:  # noqa: BLE001
        log.warning("diagnostics: dumping logs failed: %s", exc)
        dumped = []
    for f in dumped:
        ours = f.is_relative_to(scratch)  # a provider may hand back its own files: kept
        try:
            dest = out / "logs" / (f.relative_to(scratch) if ours else f.name)
            write_report_file(dest, f.read_text(errors="replace"))
            written[f"{label}/logs/{f.stem}"] = dest
        except Exception as exc:  # noqa: BLE001 - one bad file must not cost the others
            log.warning("diagnostics: copying log %s failed: %s", f.name, exc)
        finally:
            if ours:
                with contextlib.suppress(OSError):
                    f.unlink(missing_ok=True)
    return {k: str(v.relative_to(report_dir)) for k, v in written.items()}
