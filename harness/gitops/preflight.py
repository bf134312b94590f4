"""The preflight answer as data (what `drdrill preflight --json` prints and the drill report
embeds), and its text and Markdown forms. Offline: no cluster code."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, RepoError
from harness.gitops.bootstrap import discover_cluster_paths
from harness.gitops.flux_config import ALL_COMPONENTS
from harness.gitops.inputs import (
    SuppliedInputs,
    lacking_keys,
    load_inputs,
    missing_inputs,
    with_supplied,
)
from harness.gitops.kinds import SOURCE_WATCHER
from harness.gitops.model import Problem, RepoModel, analyze
from harness.gitops.revision import committed
from harness.gitops.sourceignore import source_files

SCHEMA_VERSION = 1
EXIT = {"clean": 0, "limited": 0, "incomplete": 2, "invalid": 2}
"""clean: nothing to say; limited: the repo is valid, but the drill cannot run some of it
(named under problems, severity `unsupported`); incomplete: --inputs lacks a required input;
invalid: the repo is broken (problems, severity `invalid`)."""


def default_cluster(top: Path) -> str:
    """The only cluster path the repo syncs (clusters/*, gotk-sync, FluxInstance), or an error
    listing the choices."""
    candidates = discover_cluster_paths(top, source_files(top))
    if len(candidates) == 1:
        return candidates[0]
    raise ConfigError(
        "cannot tell which cluster to drill" + (f": the repo has {', '.join(candidates)}"
                                                if candidates else ": the repo has no clusters/ "
                                                "folder, gotk-sync.yaml or FluxInstance"),
        fix="pass --cluster with the repo-relative folder of the cluster's Flux objects")


def run_preflight(repo: Path, cluster: str | None, inputs_dir: Path | None, *,
                  kustomize: Path | None, revision: str = "HEAD",
                  runnable: Callable[[str], bool] = lambda tool: True) -> dict[str, Any]:
    """The repo as committed at `revision` (what Flux gets, not the working tree).
    `runnable(tool)` says whether a controller binary the repo needs is at hand."""
    started = time.monotonic()
    with committed(repo.resolve(), revision) as commit:
        path = cluster or default_cluster(commit.path)
        model = analyze(commit.path, path, kustomize=kustomize, collect=True)
    model = replace(model, top=repo.resolve())
    if commit.uncommitted:
        shown = ", ".join(commit.uncommitted[:5]) + (" …" if len(commit.uncommitted) > 5 else "")
        model = replace(model, notes=(
            f"read commit {commit.sha[:12]} ({revision}); {len(commit.uncommitted)} uncommitted "
            f"change(s) are not what Flux gets and were not read: {shown}", *model.notes))
    if model.uses_watcher and not runnable(SOURCE_WATCHER):
        gens = [o for o in model.objects if o.kind == "ArtifactGenerator"]
        model = replace(model, problems=(*model.problems, Problem(
            "unsupported", gens[0].source_file, gens[0].ref,
            f"{len(gens)} ArtifactGenerator(s) need source-watcher (pinned in "
            "harness/tools.toml), which is not built on this machine",
            "run `drdrill tools ensure` (it builds source-watcher from the Go module proxy), "
            "or pass --tools-dir with the binary")))
    supplied = load_inputs(inputs_dir) if inputs_dir else SuppliedInputs((), ())
    return preflight_data(model, supplied, inputs_given=inputs_dir is not None,
                          seconds=time.monotonic() - started)


def preflight_data(model: RepoModel, supplied: SuppliedInputs, *, inputs_given: bool,
                   seconds: float | None = None) -> dict[str, Any]:
    items = with_supplied(model.manual_inputs, supplied)
    problems = [p.to_dict() for p in model.problems]
    if inputs_given:
        for i in missing_inputs(model.manual_inputs, supplied):
            problems.append({"severity": "missing-input", "file": None, "object": i.needed_by[0],
                             "message": f"manual input {i.kind} {i.namespace}/{i.name} is not "
                                        f"in --inputs ({i.field})",
                             "fix": f"add a {i.kind} manifest named {i.name} in namespace "
                                    f"{i.namespace} to the --inputs folder"})
        for i, keys in lacking_keys(model.manual_inputs, supplied):
            problems.append({"severity": "missing-input", "file": None, "object": i.needed_by[0],
                             "message": f"manual input {i.kind} {i.namespace}/{i.name} in "
                                        f"--inputs has no {', '.join(keys)} ({i.field})",
                             "fix": f"add {', '.join(keys)} to it"})
    verdict = model.verdict
    if verdict == "invalid":
        final = "invalid"
    elif any(p["severity"] == "missing-input" for p in problems):
        final = "incomplete"
    else:
        final = "limited" if verdict == "unsupported" else "clean"
    kinds = Counter(o.kind for o in model.objects)
    return {
        "schema_version": SCHEMA_VERSION,
        "repo": str(model.top),
        "cluster": model.cluster_path,
        "verdict": final,
        "seconds": None if seconds is None else round(seconds, 2),
        "kustomizations": len(model.kustomizations),
        "flux_objects": dict(sorted(kinds.items())),
        "rendered_objects": model.rendered_count,
        "manual_inputs": [i.to_dict() for i in items],
        "external_dependencies": [d.to_dict() for d in model.external_dependencies],
        "problems": problems,
        "embedded_limits": [limit.to_dict() for limit in model.limits],
        "local_changes": list(model.local_changes),
        "notes": list(model.notes),
        "flux_settings": flux_settings_data(model),
        "input_templates": [i.template() for i in items
                            if i.required and i.status == "missing"],
    }


def flux_settings_data(model: RepoModel) -> dict[str, Any]:
    """The repo's Flux as a drill runs it (profile `repo`): components, and each setting of
    each controller the repo's kinds need with where it came from."""
    flux = model.flux
    controllers = [c for c in ALL_COMPONENTS if c in model.controllers()]
    return {"components": list(flux.components), "components_source": flux.components_source,
            "settings": flux.describe(controllers), "notes": list(flux.notes)}


def exit_code(data: dict[str, Any]) -> int:
    return EXIT[str(data["verdict"])]


def error_data(repo: Path, cluster: str | None, exc: RepoError | ConfigError) -> dict[str, Any]:
    """The preflight answer when the repo cannot even be walked (no such cluster path)."""
    return {"schema_version": SCHEMA_VERSION, "repo": str(repo), "cluster": cluster,
            "verdict": "invalid", "kustomizations": 0, "manual_inputs": [],
            "external_dependencies": [], "embedded_limits": [], "local_changes": [],
            "notes": [],
            "problems": [{"severity": "invalid", "file": getattr(exc, "file", None),
                          "object": getattr(exc, "obj", None), "message": exc.message,
                          "fix": exc.fix}]}


# -- text and Markdown -----------------------------------------------------------------------

def _input_line(i: dict[str, Any]) -> str:
    extra = " (the drill's local Git server stands in)" if i.get("replaced_in_drill") else ""
    if i.get("replaced_in_drill") and i["status"] == "missing":
        i = {**i, "status": "stood-in"}
    why = f" — {i['why']}" if i.get("why") else ""
    return (f"{i['status']:<19} {i['kind']} {i['namespace']}/{i['name']}  needed by "
            f"{', '.join(i['needed_by'][:3])}{' …' if len(i['needed_by']) > 3 else ''} via "
            f"{i['field']}{why}{extra}")


def render_text(data: dict[str, Any], *, inventory: bool = False) -> str:
    if inventory:
        return render_inventory(data)
    out = [f"preflight: {data['verdict'].upper()}  {data['repo']} --cluster {data['cluster']}"
           + (f"  ({data['seconds']}s)" if data.get("seconds") is not None else "")]
    if data.get("flux_objects"):
        out.append(f"  {data['kustomizations']} Kustomizations; Flux objects: " + ", ".join(
            f"{n} {k}" for k, n in data["flux_objects"].items()))
    inputs = data["manual_inputs"]
    need = [i for i in inputs if i["status"] == "missing" and not i.get("replaced_in_drill")]
    counts = Counter("stood-in" if i.get("replaced_in_drill") and i["status"] == "missing"
                     else i["status"] for i in inputs)
    out.append(f"manual inputs: {len(need)} required, {len(inputs)} listed" + (
        " (" + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + ")"
        if inputs else ""))
    out.extend(f"  {_input_line(i)}" for i in inputs)
    deps = data["external_dependencies"]
    out.append(f"external dependencies: {len(deps)}")
    for d in deps:
        users = d["used_by"]
        out.append(f"  {d['kind']:<21} {d['url']}  ({users[0]}"
                   + (f" and {len(users) - 1} more" if len(users) > 1 else "") + ")")
    if data.get("embedded_limits"):
        out.append("the embedded cluster (kwok: pods run no code) cannot converge these; "
                   "use --provider kind or lab:")
        out.extend(f"  {x['object']}: {x['why']}" for x in data["embedded_limits"])
    if not inventory:
        for p in data["problems"]:
            where = ", ".join(x for x in (p.get("file"), p.get("object")) if x)
            out.append(f"{p['severity']}: {p['message']}" + (f" ({where})" if where else ""))
            if p.get("fix"):
                out.append(f"  fix: {p['fix']}")
        for c in data.get("local_changes") or []:
            out.append(f"drill runs locally: {c}")
        if data.get("input_templates"):
            out.append("templates for the missing inputs (fill in, save in an --inputs folder):")
            out.extend("  " + line for t in data["input_templates"]
                       for line in ("---\n" + t).splitlines())
        flux = data.get("flux_settings") or {}
        if flux.get("settings"):
            out.append(f"Flux settings (components: {flux['components_source']}):")
            out.extend(f"  {s['controller']:<27} {s['arg']}  ({s['source']})"
                       for s in flux["settings"] if s["origin"] != "flux-default")
            defaults = sorted({s["controller"] for s in flux["settings"]
                               if s["origin"] == "flux-default"})
            if defaults:
                out.append("  Flux's defaults otherwise (" + ", ".join(
                    s["arg"] for s in flux["settings"]
                    if s["origin"] == "flux-default" and s["controller"] == defaults[0]) +
                    f" for {defaults[0]}, …)")
            out.extend(f"  note: {n}" for n in flux.get("notes") or [])
        for n in data.get("notes") or []:
            out.append(f"note: {n}")
    return "\n".join(out) + "\n"


def render_inventory(data: dict[str, Any]) -> str:
    """What a recovery needs from outside Git, and nothing else; when parts of the repo did not
    render, it says which and why, since what they need is then missing from the list."""
    inputs = data["manual_inputs"]
    need = [i for i in inputs if i["status"] == "missing" and not i.get("replaced_in_drill")]
    out = [f"inventory of {data['repo']} --cluster {data['cluster']}: {len(need)} manual "
           f"input(s) to provide, {len(data['external_dependencies'])} external "
           "dependencies"]
    broken = [p for p in data["problems"] if p["severity"] == "invalid"]
    if broken:
        out.append(f"INCOMPLETE: the repo is invalid ({len(broken)} problem(s)); Flux would "
                   "stop there, and what lies behind them may be missing below:")
        out.extend(f"  {p.get('file') or ''} {p.get('object') or ''}: {p['message']}".rstrip()
                   for p in broken)
    skipped = [n for n in data.get("notes") or [] if "not rendered" in n or
               "not inventoried" in n]
    out.extend(f"  not inventoried: {n}" for n in skipped)
    out.append("manual inputs:")
    out.extend(f"  {_input_line(i)}" for i in inputs)
    out.append("external dependencies:")
    for d in data["external_dependencies"]:
        users = d["used_by"]
        out.append(f"  {d['kind']:<21} {d['url']}  ({users[0]}"
                   + (f" and {len(users) - 1} more" if len(users) > 1 else "") + ")")
    if data.get("input_templates"):
        out.append("templates for the inputs to provide (fill in, save in an --inputs folder):")
        out.extend("  " + line for t in data["input_templates"]
                   for line in ("---\n" + t).splitlines())
    return "\n".join(out) + "\n"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(data: dict[str, Any], *, inventory: bool = False) -> str:
    out = [f"## drdrill preflight: **{data['verdict']}**", "",
           f"`{data['cluster']}` — {data['kustomizations']} Kustomizations"
           + (f", {data['seconds']} s" if data.get("seconds") is not None else ""), ""]
    out += ["### Manual inputs", "", "| status | kind | namespace/name | needed by | field | why |",
            "|---|---|---|---|---|---|"]
    out += [f"| {i['status']} | {i['kind']} | {_cell(i['namespace'])}/{_cell(i['name'])} | "
            f"{_cell(', '.join(i['needed_by']))} | {_cell(i['field'])} | {_cell(i['why'])} |"
            for i in data["manual_inputs"]]
    out += ["", "### External dependencies", "", "| kind | url | used by |", "|---|---|---|"]
    out += [f"| {d['kind']} | {_cell(d['url'])} | {_cell(', '.join(d['used_by'][:5]))}"
            f"{' …' if len(d['used_by']) > 5 else ''} |" for d in data["external_dependencies"]]
    if data.get("embedded_limits"):
        out += ["", "### Not on the embedded cluster (use kind or lab)", "",
                "| object | why |", "|---|---|"]
        out += [f"| {_cell(x['object'])} | {_cell(x['why'])} |" for x in data["embedded_limits"]]
    if not inventory and data["problems"]:
        out += ["", "### Problems", "", "| severity | file | object | message | fix |",
                "|---|---|---|---|---|"]
        out += [f"| {p['severity']} | {_cell(p.get('file') or '')} | "
                f"{_cell(p.get('object') or '')} | {_cell(p['message'])} | "
                f"{_cell(p.get('fix') or '')} |" for p in data["problems"]]
    return "\n".join(out) + "\n"
