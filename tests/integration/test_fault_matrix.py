"""The fault-injection matrix: at every phase boundary a signal (SIGINT, SIGTERM, SIGHUP), a
kill -9 (then `drdrill gc`), a delete() that fails or lies, a report writer that raises, a full
disk. Each row asserts the verdict, the report (or, where no report can be written, what the
harness said) and that nothing of the run is left: no process, port, folder or container.

Most rows drive the `procs` cluster (tests/integration/faultkit.py: real processes on real
ports in a real folder, no Kubernetes) so that a row costs seconds; the rows that need the real
thing — the disaster of a real embedded cluster, whose lost signal this matrix was written
for — use the embedded provider.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.gc import run_processes
from harness.procs import port_in_use

pytestmark = pytest.mark.integration
TOP = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Row:
    provider: str = "procs"
    faults: str = ""
    at: tuple[str, int] | None = None
    """(phase, n): act when `phase <name> ...` is printed for the n-th time."""
    act: str | None = None
    """A signal name, SIGKILL (then `drdrill gc`), or `twice` (SIGINT, and again in teardown)."""
    delay_s: float = 0.2
    verdict: str | None = "broken"
    """None: no report can be written (kill -9, report.json itself fails)."""
    hit: str | None = None
    """The phase whose (last) record must be broken."""
    words: tuple[str, ...] = ()
    """Words the report's error (or, without a report, the output) must hold."""
    leftover: bool = False
    """Teardown cannot release everything: the report names it, `drdrill gc --run-id` fixes it."""
    left_words: tuple[str, ...] = ()
    """Words the report's leftovers must hold."""
    keep: str = "never"
    disk_full: bool = False
    writer_bug: bool = False
    """A writer with a bug logs its traceback (that is what a bug report needs)."""


def _sig(at: tuple[str, int], act: str, **kw: object) -> Row:
    return Row(at=at, act=act, hit=at[0], words=(f"interrupted by {act}",), **kw)  # type: ignore[arg-type]


SIGNALS_AT: dict[tuple[str, int], tuple[str, ...]] = {
    # (phase, round) -> the signals sent, one row each, as that phase starts (procs cluster)
    ("preflight", 1): ("SIGINT", "SIGTERM", "SIGHUP"),
    ("provision", 1): ("SIGINT", "SIGTERM", "SIGHUP"),
    ("bootstrap", 1): ("SIGTERM",),
    ("converge", 1): ("SIGHUP",),
    ("verify", 1): ("SIGINT",),
    ("disaster", 1): ("SIGINT", "SIGTERM", "SIGHUP"),
    ("provision", 2): ("SIGTERM",),
    ("converge", 2): ("SIGINT",),
    ("verify", 2): ("SIGHUP",),
}
MATRIX: dict[str, Row] = {
    f"{sig}-{phase}{'-r2' if rnd == 2 else ''}": _sig(
        (phase, rnd), sig, delay_s=0.05 if phase == "preflight" else 0.2)
    for (phase, rnd), sigs in SIGNALS_AT.items() for sig in sigs
}
MATRIX |= {
    "second-SIGINT-in-teardown-ignored": Row(at=("converge", 1), act="twice", hit="converge",
                                             words=("interrupted by SIGINT",)),
    "SIGTERM-in-report-ignored": Row(at=("report", 1), act="SIGTERM", verdict="passed",
                                     delay_s=0.05),
    # kill -9: no report can be written; `drdrill gc` removes what is left
    "SIGKILL-converge-then-gc": Row(at=("converge", 1), act="SIGKILL", verdict=None),
    # providers that fail to delete, or lie about it
    "delete-fails": Row(faults="delete-fails", hit="disaster", leftover=True,
                        words=("delete refused",)),
    "delete-fails-in-teardown": Row(faults="delete-fails-r2", hit="teardown", leftover=True,
                                    words=("teardown of run", "drdrill gc --run-id")),
    "delete-lies-disaster-catches-it": Row(faults="delete-lies", hit="disaster", leftover=True,
                                           words=("did not take cluster r1 down", "process")),
    # report writers
    "report-writer-raises": Row(faults="writer-raises", hit="report", writer_bug=True,
                                words=("html", "injected writer bug")),
    "report-json-writer-raises": Row(faults="json-writer-raises", verdict=None,
                                     writer_bug=True, words=("json", "injected writer bug")),
    "disk-full-in-report-folder": Row(disk_full=True, verdict=None,
                                      words=("No space left on device", "report")),
    # a kept cluster survives `drdrill gc`
    "keep-always-survives-gc": Row(keep="always", verdict="passed"),
    # the real embedded cluster
    "embedded-SIGINT-1s-into-disaster": _sig(("disaster", 1), "SIGINT", provider="embedded",
                                             delay_s=1.0),
    "embedded-SIGTERM-1s-into-disaster": _sig(("disaster", 1), "SIGTERM", provider="embedded",
                                              delay_s=1.0),
    # bootstrap of chain3 takes ~0.5 s on a quiet machine: signal well inside it
    "embedded-SIGHUP-bootstrap": _sig(("bootstrap", 1), "SIGHUP", provider="embedded",
                                      delay_s=0.1),
    "embedded-SIGKILL-bootstrap-then-gc": Row(provider="embedded", at=("bootstrap", 1),
                                              act="SIGKILL", verdict=None, delay_s=0.5),
    "embedded-delete-fails": Row(provider="embedded", faults="delete-fails", hit="disaster",
                                 leftover=True, words=("delete refused",),
                                 left_words=("(kube-apiserver)", "(etcd)", "still answers")),
}


def _env(state: Path, row: Row) -> dict[str, str]:
    faults = ",".join(f for f in (row.faults, "procs" if row.provider == "procs" else "") if f)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "DRDRILL_STATE_DIR": str(state),
            "DRDRILL_FAULT": faults}


def _drdrill(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env, cwd=TOP,
                          capture_output=True, text=True, timeout=120)


def _drive(row: Row, repo: Path, report_dir: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run the drill; act when the row's phase starts; -> (exit code, everything it printed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.faultkit", "drill", "--provider", row.provider,
         "--repo", str(repo), "--cluster", "clusters/dev", "--report-dir", str(report_dir),
         "--keep-cluster", row.keep], env=env, cwd=TOP, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen: list[str] = []
    count = 0
    acted = row.at is None
    for line in proc.stdout:
        seen.append(line)
        if acted:
            if row.act == "twice" and "phase teardown ..." in line:
                proc.send_signal(signal.SIGINT)
            continue
        if row.at is not None and f"phase {row.at[0]} ..." in line:
            count += 1
            if count == row.at[1]:
                time.sleep(row.delay_s)
                sig = signal.SIGINT if row.act == "twice" else getattr(signal, row.act or "")
                proc.send_signal(sig)
                acted = True
                if sig == signal.SIGKILL:
                    break
    rest, _ = proc.communicate(timeout=180)
    assert acted, "the drill never reached " + repr(row.at) + ":\n" + "".join(seen)
    return proc.returncode, "".join(seen) + (rest or "")


def _ports(output: str, report: dict | None) -> set[int]:
    ports = {int(p) for p in re.findall(r"serving http://127\.0\.0\.1:(\d+)/", output)}
    for desc in ((report or {}).get("settings") or {}).get("provider_rounds", {}).values():
        ports |= set(desc.get("ports") or [])
        for args in (desc.get("flags") or {}).values():
            for arg in args:
                ports |= {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", arg)}
                m = re.fullmatch(r"--secure-port=(\d+)", arg)
                if m:
                    ports.add(int(m.group(1)))
    return ports


def _containers(run_id: str) -> list[str]:
    if shutil.which("docker") is None:
        return []
    res = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=drdrill.dev/run-id={run_id}"],
                         capture_output=True, text=True, check=False, timeout=30)
    return res.stdout.split()


def _left(run_id: str, state: Path, ports: set[int]) -> list[str]:
    left = [f"process {pid}" for pid in run_processes()[0].get(run_id, [])]
    left += [f"port {p}" for p in sorted(ports) if port_in_use(p)]
    left += [f"folder {state / run_id}"] if (state / run_id).exists() else []
    return left + [f"container {c}" for c in _containers(run_id)]


def _settle(run_id: str, state: Path, ports: set[int]) -> list[str]:
    """What is left, given a moment for killed processes to be reaped and sockets to close."""
    for _ in range(20):
        left = _left(run_id, state, ports)
        if not left:
            return []
        time.sleep(0.25)
    return left


@contextlib.contextmanager
def _full_disk(path: Path):
    """A 64 KiB tmpfs filled to the brim at `path` (root can mount one; else ENOSPC is injected
    at the report writer's boundary)."""
    path.mkdir(parents=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
        capture_output=True, check=False).returncode == 0
    try:
        if mounted:
            with contextlib.suppress(OSError), (path / "filler").open("wb") as fh:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def chain3(tmp_path_factory) -> Path:
    from tests.conftest import FIXTURE_REPOS, git_commit_tree

    dest = tmp_path_factory.mktemp("repo") / "chain3"
    git_commit_tree([FIXTURE_REPOS / "chain3"], dest)
    return dest


@pytest.mark.parametrize("case", list(MATRIX))
def test_fault(case: str, chain3: Path, tmp_path: Path) -> None:
    row = MATRIX[case]
    state = tmp_path / "state"
    env = _env(state, row)
    report_dir = tmp_path / "report"
    with contextlib.ExitStack() as stack:
        if row.disk_full and not stack.enter_context(_full_disk(report_dir)):
            env["DRDRILL_FAULT"] += ",enospc"
        rc, said = _drive(row, chain3, report_dir, env)
        report = json.loads((report_dir / "report.json").read_text()) \
            if (report_dir / "report.json").exists() else None
    m = re.search(r"\] run (\S+): ", said)
    assert m, said
    run_id = m.group(1)
    assert report is None or report["run_id"] == run_id
    ports = _ports(said, report)
    assert row.writer_bug or "Traceback" not in said, said

    if row.verdict is None:
        assert report is None and rc != 0, said
        for word in row.words:
            assert word in said, f"{word!r} missing from:\n{said}"
    else:
        assert report is not None, said
        assert report["verdict"] == row.verdict, (report["error"], said)
        assert rc == (0 if row.verdict == "passed" else 2), said
        assert [p["name"] for p in report["phases"]][-2:] == ["report", "teardown"]
        if row.hit:
            hit = [p for p in report["phases"] if p["name"] == row.hit]
            assert hit and hit[-1]["outcome"] == "broken", report["phases"]
        for word in row.words:
            assert word in (report["error"] or ""), f"{word!r} missing: {report['error']}"
    if row.act == "twice":
        assert "SIGINT ignored: teardown is running" in said, said
    if row.act == "SIGTERM" and row.verdict == "passed":
        assert "SIGTERM ignored" in said, said

    if row.act == "SIGKILL":
        assert _left(run_id, state, ports), "a killed run leaves its cluster behind"
        res = _drdrill(env, "gc")
        assert f"removed run {run_id}" in res.stdout, res.stdout + res.stderr
    elif row.leftover:
        assert report is not None
        assert report["leftovers"], report
        assert f"drdrill gc --run-id {run_id}" in said
        assert any(item.startswith(("process", "port")) or "still running" in item
                   for item in report["leftovers"]), report["leftovers"]
        for word in row.left_words:
            assert any(word in item for item in report["leftovers"]), report["leftovers"]
        assert "Left behind" in (report_dir / "report.md").read_text()
        assert _left(run_id, state, ports), "the report names leftovers that exist"
        res = _drdrill(env, "gc", "--run-id", run_id)
        assert f"removed run {run_id}" in res.stdout, res.stdout + res.stderr
    elif row.keep == "always":
        assert report is not None and not report["leftovers"]
        assert run_processes()[0].get(run_id), "the kept cluster runs"
        res = _drdrill(env, "gc")
        assert f"left alone: run {run_id}: kept" in res.stdout
        assert f"removed run {run_id}" not in res.stdout
        assert run_processes()[0].get(run_id), "a kept cluster survives `drdrill gc`"
        res = _drdrill(env, "gc", "--dry-run")
        assert f"left alone: run {run_id}: kept" in res.stdout, res.stdout
        res = _drdrill(env, "gc", "--run-id", run_id)
        assert f"removed run {run_id}" in res.stdout, res.stdout
    elif report is not None:
        assert not report["leftovers"], report["leftovers"]
    assert not _settle(run_id, state, ports), said
