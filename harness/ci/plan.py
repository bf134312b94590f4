"""What a nightly CI job must drill, from preflight: the cluster folders the repo syncs, the
provider each can run on (its embedded limits), and the manual inputs each needs as CI secrets.

Offline, like preflight: this module imports no cluster code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

PROVIDER_PREFERENCE = ("embedded", "kind", "k3d")
"""What a CI runner can host, cheapest first. `lab` needs hosts of the user's: only on request."""
SCENARIO = "full-rebuild"
SCHEDULE = "17 3 * * *"
"""Nightly, off the full hour (CI schedulers are busiest on it)."""


@dataclass(frozen=True)
class SecretInput:
    """A manual input delivered as one CI secret holding the input's whole manifest."""

    kind: str
    namespace: str
    name: str
    secret: str
    """The CI secret's name, e.g. DRDRILL_SECRET_FLUX_SYSTEM_SOPS_AGE."""
    why: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Cell:
    """One matrix cell: a cluster folder drilled on one provider."""

    cluster: str
    provider: str
    inputs: tuple[str, ...]
    """Names of the CI secrets this cluster needs (SecretInput.secret)."""
    preflight: str
    """Its preflight verdict (clean, limited, invalid, ...)."""

    @property
    def slug(self) -> str:
        """A name for artifacts and jobs: `clusters-staging-kind`."""
        return re.sub(r"[^A-Za-z0-9]+", "-", f"{self.cluster}-{self.provider}").strip("-").lower()


@dataclass(frozen=True)
class Plan:
    repo: str
    """The repo's name (for titles only)."""
    cells: tuple[Cell, ...]
    inputs: tuple[SecretInput, ...]
    notes: tuple[str, ...]
    """What the user should know (a cluster preflight calls invalid, a provider override)."""
    scenario: str = SCENARIO
    schedule: str = SCHEDULE
    rto_s: float | None = None


def secret_name(kind: str, namespace: str, name: str) -> str:
    """DRDRILL_SECRET_FLUX_SYSTEM_SOPS_AGE: what GitHub and GitLab both accept as a name."""
    return "DRDRILL_" + re.sub(r"[^A-Z0-9]+", "_", f"{kind}_{namespace}_{name}".upper()).strip("_")


def providers_for(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The cheapest provider that can run every object of the cluster: embedded unless
    preflight lists embedded limits (or an unsupported object whose fix names providers), then
    the first CI-hostable provider all of them allow."""
    limits = [set(x.get("providers") or ()) for x in data.get("embedded_limits") or ()
              if isinstance(x, Mapping)]
    for problem in data.get("problems") or ():
        named = set(re.findall(r"--provider (\w+)", str(problem.get("fix") or "")))
        if problem.get("severity") == "unsupported" and named:
            limits.append(named)
    if not limits:
        return (PROVIDER_PREFERENCE[0],)
    allowed = set(PROVIDER_PREFERENCE[1:])
    for limit in limits:
        allowed &= limit
    choice = next((p for p in PROVIDER_PREFERENCE if p in allowed), None)
    return (choice,) if choice else ("kind",)


def build_plan(repo: Path, clusters: Sequence[str], preflight: Callable[[str], dict[str, Any]],
               *, providers: Sequence[str] = (), rto_s: float | None = None,
               scenario: str = SCENARIO, schedule: str = SCHEDULE) -> Plan:
    """One cell per cluster and provider; `preflight(cluster)` is `drdrill preflight --json`'s
    answer for it. `providers` overrides the choice made from the embedded limits."""
    if not clusters:
        raise ConfigError(f"{repo} syncs no cluster folder drdrill can find (clusters/*, a "
                          "gotk-sync.yaml, a FluxInstance's sync.path)",
                          fix="run `drdrill preflight --cluster DIR` to check the folder, then "
                              "`drdrill init --cluster DIR`")
    cells: list[Cell] = []
    by_id: dict[str, SecretInput] = {}
    notes: list[str] = []
    for cluster in clusters:
        data = preflight(cluster)
        verdict = str(data.get("verdict", "?"))
        if verdict == "invalid":
            first: Mapping[str, Any] = next(iter(data.get("problems") or ()), {})
            notes.append(f"preflight calls {cluster} invalid ({first.get('message', '?')}); its "
                         "cells will fail until that is fixed")
        needed = [i for i in data.get("manual_inputs") or () if _required(i)]
        names = []
        for item in needed:
            key = f"{item['kind']}/{item['namespace']}/{item['name']}"
            if key not in by_id:
                by_id[key] = SecretInput(str(item["kind"]), str(item["namespace"]),
                                         str(item["name"]), "", str(item.get("why") or ""))
            names.append(key)
        chosen = tuple(providers) or providers_for(data)
        if providers and "embedded" in providers and data.get("embedded_limits"):
            notes.append(f"{cluster}: the embedded provider cannot run "
                         f"{len(data['embedded_limits'])} of its objects (see `drdrill "
                         "preflight`); kind can")
        for provider in chosen:
            cells.append(Cell(cluster, provider, tuple(names), verdict))
    inputs = _named(by_id.values())
    secret_of = {f"{i.kind}/{i.namespace}/{i.name}": i.secret for i in inputs}
    cells = [Cell(c.cluster, c.provider, tuple(sorted(secret_of[k] for k in c.inputs)),
                  c.preflight) for c in cells]
    return Plan(repo.resolve().name, tuple(cells), inputs, tuple(notes), scenario, schedule,
                rto_s)


def _required(item: Mapping[str, Any]) -> bool:
    return item.get("status") == "missing" and not item.get("replaced_in_drill")


def _named(items: Iterable[SecretInput]) -> tuple[SecretInput, ...]:
    """Give each input its secret name; two inputs that spell to one name get a short hash."""
    items = sorted(items, key=lambda i: (i.namespace, i.name, i.kind))
    plain = [secret_name(i.kind, i.namespace, i.name) for i in items]
    out = []
    for item, name in zip(items, plain, strict=True):
        if plain.count(name) > 1:
            digest = hashlib.sha256(f"{item.kind}/{item.namespace}/{item.name}".encode())
            name = f"{name}_{digest.hexdigest()[:6].upper()}"
        out.append(SecretInput(item.kind, item.namespace, item.name, name, item.why))
    return tuple(out)
