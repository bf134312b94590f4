"""What several scenarios share: losing the cluster, the time-to-ready figure, the served
repository (commits, reverts, telling Flux), Flux inventories and small bounded watchers."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.command import Command, run
from harness.report.model import FigureItem, RecoveryFigure

KS_GROUP, KS_VERSION, KS_PLURAL = "kustomize.toolkit.fluxcd.io", "v1", "kustomizations"
GIT_GROUP, GIT_VERSION, GIT_PLURAL = "source.toolkit.fluxcd.io", "v1", "gitrepositories"
SYNC = ("flux-system", "flux-system")


def lose_cluster(s: Any, rnd: int) -> None:
    """The disaster of a rebuild: every process and its data are gone, as if the hardware died."""
    s.lose_cluster(rnd)


def ttr_figure(name: str, label: str, description: str,
               ) -> Callable[[Any], Sequence[RecoveryFigure]]:
    """A figures hook whose headline is the recovery round's time-to-ready."""

    def figures(s: Any) -> Sequence[RecoveryFigure]:
        rnd = s.scenario.last_round
        value = s.drill.time_to_ready(round=rnd)
        rto = getattr(s.opts, "rto_s", None)  # the bound --rto holds it to, judged as verify does
        met = None if rto is None else (value is not None and value <= rto)
        return [RecoveryFigure(name, label, value, description, limit_s=rto, met=met)]

    return figures


def since_round_start(s: Any, rnd: int, t: float | None) -> float | None:
    start = s.drill.round_start(rnd)
    return None if t is None or start is None else round(t - start, 3)


# -- Flux objects in the cluster -------------------------------------------------------------

def custom(s: Any) -> Any:
    from kubernetes import client as k8s

    return k8s.CustomObjectsApi(s.api)


def kustomizations(s: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = custom(s).list_cluster_custom_object(
        KS_GROUP, KS_VERSION, KS_PLURAL).get("items", [])
    return items


def condition(obj: dict[str, Any], ctype: str = "Ready") -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return {}


def ref_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', 'Kustomization')}/{meta.get('namespace')}/{meta.get('name')}"


def inventory(s: Any) -> dict[tuple[str, str, str, str], str]:
    """(group, kind, namespace, name) -> the Kustomization (`ns/name`) that manages it.

    Flux inventory ids read `<namespace>_<name>_<group>_<kind>` (group empty for core)."""
    out: dict[tuple[str, str, str, str], str] = {}
    for ks in kustomizations(s):
        meta = ks.get("metadata") or {}
        owner = f"{meta.get('namespace')}/{meta.get('name')}"
        for entry in ((ks.get("status") or {}).get("inventory") or {}).get("entries") or []:
            parts = str(entry.get("id", "")).split("_")
            if len(parts) >= 4:
                out[(parts[-2], parts[-1], parts[0], "_".join(parts[1:-2]))] = owner
    return out


def request_reconcile(s: Any, group: str, version: str, plural: str, namespace: str,
                      name: str) -> None:
    """What `flux reconcile` and a webhook Receiver do: annotate reconcile.fluxcd.io/requestedAt."""
    stamp = dt.datetime.now(dt.UTC).isoformat()
    custom(s).patch_namespaced_custom_object(
        group, version, namespace, plural, name,
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}})


def notify_push(s: Any) -> None:
    """Tell Flux the served repo changed, as a webhook Receiver on the Git server would."""
    request_reconcile(s, GIT_GROUP, GIT_VERSION, GIT_PLURAL, *SYNC)


def poll(probe: Callable[[], tuple[bool, str]], *, timeout_s: float, interval_s: float = 0.25,
         clock: Callable[[], float] = time.monotonic) -> tuple[bool, str]:
    """Call `probe` until it says done or `timeout_s` passes; returns (done, last message).

    A probe that raises is retried (the API may be restarting); its error becomes the message."""
    deadline = clock() + timeout_s
    last = ""
    while True:
        try:
            done, last = probe()
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            done, last = False, f"{type(exc).__name__}: {exc}"
        if done:
            return True, last
        remaining = deadline - clock()
        if remaining <= 0:
            return False, last
        time.sleep(min(interval_s, remaining))


# -- the served repository ---------------------------------------------------------------------

def git(*args: str, cwd: Path | None = None) -> str:
    argv = ["git", *(["-C", str(cwd)] if cwd else []), *args]
    return run(Command.of(*argv)).stdout.strip()


_IDENTITY = ("-c", "user.name=drdrill", "-c", "user.email=drdrill@localhost")


def commit_to_served(s: Any, message: str, edit: Callable[[Path], str | None] | None = None,
                     *, revert: bool = False) -> str:
    """Commit to the served repository's branch and make it the revision under test.

    `edit(worktree)` changes files (returns a note for the report, or None); `revert=True`
    runs `git revert HEAD` instead. Returns the new commit's SHA."""
    assert s.git is not None and s.rev is not None
    with tempfile.TemporaryDirectory(prefix="drdrill-commit-") as tmp:
        work = Path(tmp) / "work"
        git("clone", "--quiet", "--branch", s.rev.branch, str(s.git.bare_repo), str(work))
        if revert:
            git(*_IDENTITY, "revert", "--no-edit", "HEAD", cwd=work)
        else:
            if edit is not None:
                edit(work)
            git("add", "-A", cwd=work)
            git(*_IDENTITY, "commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        git("push", "--quiet", "--no-verify", "origin", f"HEAD:refs/heads/{s.rev.branch}",
            cwd=work)
        sha = git("rev-parse", "HEAD", cwd=work)
    s.rev = replace(s.rev, sha=sha)
    return sha


def iter_yaml_docs(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import yaml

    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError):
        return
    for i, doc in enumerate(docs):
        if isinstance(doc, dict):
            yield i, doc


def figure_item(ref: str, value: float | None, note: str = "") -> FigureItem:
    return FigureItem(ref, None if value is None else round(value, 3), note)
