"""`drdrill report allure DIR...`: one Allure 3 report of many drills, with each drill's
time-to-ready and recovery phases as performance metrics, a quality gate holding each to its
RTO, and history kept as JSONL between runs (`--history FILE`).

Allure 3 (npm `allure`, pinned in harness/tools.toml) is installed once into the cache.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.command import Command, run
from harness.config import Config
from harness.errors import CommandError, ToolNotFoundError

RESULTS_DIR = "allure-results"


@dataclass(frozen=True)
class Drill:
    """What the quality gate needs from one report.json beside an allure-results folder."""

    key: str
    title: str
    group: str
    rto_s: float | None
    started_at: str


def allure_program(config: Config, *, progress: Any = None) -> Path:
    """The pinned Allure 3 CLI, installed with npm into the cache the first time."""
    from harness.tools import load_manifest
    from harness.tools.resolve import file_lock

    version = load_manifest().npm["allure"]
    home = config.cache_dir / "npm" / f"allure-{version}"
    program = home / "node_modules" / ".bin" / "allure"
    if program.is_file():
        return program
    npm = shutil.which("npm")
    if npm is None:
        raise ToolNotFoundError("npm is not installed; Allure 3 comes from npm",
                                tool="allure", version=version,
                                fix="install Node.js 20+ with npm (apt-get install nodejs npm)")
    with file_lock(config.cache_dir / "locks" / f"allure-{version}.lock"):
        if not program.is_file():
            if progress:
                progress(f"installing allure {version} from npm into {home}")
            run(Command.of(npm, "install", "--prefix", str(home), "--no-audit", "--no-fund",
                           "--loglevel=error", f"allure@{version}").with_timeout(900),
                fix="check access to the npm registry")
    return program


def find_results(dirs: list[Path]) -> list[tuple[Path, Drill | None]]:
    """Every allure-results folder under `dirs`, with the drill its report.json describes."""
    from harness.report.allure import group_title, history_id, metric_key
    from harness.report.model import DrillReport

    found: list[tuple[Path, Drill | None]] = []
    for folder in dirs:
        candidates = [folder] if folder.name == RESULTS_DIR else sorted(
            folder.rglob(RESULTS_DIR))
        for results in candidates:
            if not results.is_dir():
                continue
            drill = None
            try:
                data = json.loads((results.parent / "report.json").read_text(encoding="utf-8"))
                fields = set(DrillReport.__dataclass_fields__)
                stub = DrillReport(**{k: v for k, v in data.items() if k in fields
                                      and k in ("run_id", "scenario", "provider", "repo",
                                                "revision", "verdict", "started_at",
                                                "time_to_ready_s", "rto_target_s", "cluster",
                                                "repo_id")},
                                   phases=(), objects=(), manual_steps=(), critical_path=(),
                                   settings={}, diagnostics={})
                rto = stub.rto_target_s
                drill = Drill(metric_key(stub, "time_to_ready"), group_title(stub),
                              history_id(stub), float(rto) if rto else None, stub.started_at)
            except (OSError, ValueError, TypeError):
                pass  # results without a readable report.json: shown, but not gated
            found.append((results, drill))
    return found


def allure_config(drills: list[Drill], *, history: Path | None, name: str) -> dict[str, Any]:
    """The allurerc: history as JSONL, one performance group per drill, and a quality gate
    per drill with an RTO (its newest run's time-to-ready may not exceed it)."""
    latest: dict[str, Drill] = {}
    for d in sorted(drills, key=lambda d: d.started_at):
        latest[d.group] = d
    rules = [{"id": f"RTO {d.title}", "metricMax": {"key": d.key, "value": d.rto_s, "unit": "s"}}
             for d in latest.values() if d.rto_s]
    config: dict[str, Any] = {
        "name": name,
        "performance": {"groups": {d.group: {"title": d.title} for d in latest.values()}},
    }
    if history is not None:
        config["historyPath"] = str(history.resolve())
    if rules:
        config["qualityGate"] = {"rules": rules}
    return config


def run_allure(dirs: list[Path], out: Path, *, history: Path | None, name: str,
               config: Config, say: Any = print) -> int:
    """Generate the report; 0, 1 when a drill's quality gate (RTO) failed, 2 with no results."""
    found = find_results(dirs)
    if not found:
        say(f"drdrill: no {RESULTS_DIR} folder under {', '.join(map(str, dirs))}")
        return 2
    program = allure_program(config, progress=say)
    if history is not None:
        history.parent.mkdir(parents=True, exist_ok=True)
    settings = allure_config([d for _, d in found if d], history=history, name=name)
    results = [str(r.resolve()) for r, _ in found]
    with tempfile.TemporaryDirectory(prefix="drdrill-allure-") as tmp:
        rc_file = Path(tmp) / "allurerc.mjs"
        rc_file.write_text("export default " + json.dumps(settings, indent=2) + ";\n",
                           encoding="utf-8")
        env = _node_env(Path(tmp))
        run(Command.of(program, "generate", "--config", str(rc_file), "--output",
                       str(out.resolve()), *results).with_env(**env).with_timeout(900),
            fix="read Allure's output above")
        # `allure generate` records the metrics but does not judge them; the gate does. Without
        # historyPath: the gate would append a second history point for the same run.
        gate_rc = Path(tmp) / "gate.allurerc.mjs"
        gate_settings = {k: v for k, v in settings.items() if k != "historyPath"}
        gate_rc.write_text("export default " + json.dumps(gate_settings, indent=2) + ";\n",
                           encoding="utf-8")
        # Run in the temp folder: the gate writes an allure-report/ of its own where it runs.
        gate = Command.of(program, "quality-gate", "--config", str(gate_rc), *results
                          ).with_env(**env).in_dir(Path(tmp)).with_timeout(300)
        result = run(gate, check=False)
    text = _plain(result.stdout + result.stderr)
    # metricMax's message, also for a drill without time-to-ready ("n/a exceeds ...").
    failures = [line.strip() for line in text.splitlines() if "exceeds the allowed" in line]
    if result.returncode not in (0, 1) or (result.returncode == 1 and not failures):
        raise CommandError(gate.argv, result.returncode, result.stdout, result.stderr,
                           fix="read Allure's output above")
    for line in failures:
        say(f"quality gate: {line}")
    rules = len(settings.get("qualityGate", {}).get("rules", []))
    say(f"Allure 3 report: {out / 'index.html'} ({len(found)} result folder(s)"
        + (f", history {history}" if history else "") + f"; quality gate of {rules} RTO "
        f"rule(s) {'FAILED' if failures else 'passed'})")
    return 1 if failures else 0


_ITERATOR_POLYFILL = """\
// Allure 3 calls Iterator.prototype.toArray (Node 22); older Node gets it here.
const proto = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]()));
if (typeof proto.toArray !== "function") {
  Object.defineProperty(proto, "toArray", {
    value: function toArray() { return Array.from(this); }, writable: true, configurable: true,
  });
}
"""


def _node_env(tmp: Path) -> dict[str, str]:
    """NODE_OPTIONS that load the polyfill when the machine's Node is older than 22."""
    node = shutil.which("node")
    if node is None:
        return {}
    version = run(Command.of(node, "--version").with_timeout(30), check=False).stdout.strip()
    major = int(version.lstrip("v").split(".")[0]) if version[1:2].isdigit() else 0
    if major >= 22:
        return {}
    polyfill = tmp / "iterator-to-array.mjs"
    polyfill.write_text(_ITERATOR_POLYFILL, encoding="utf-8")
    return {"NODE_OPTIONS": f"--import={polyfill.as_uri()}"}


def _plain(text: str) -> str:
    """Allure's output without its colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def cmd_allure(args: Any) -> int:
    return run_allure(args.dirs, args.out, history=args.history, name=args.name,
                      config=Config.from_env(), say=lambda line: print(line, file=sys.stderr))
