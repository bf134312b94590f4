"""The fault-injection matrix: at every phase a signal (SIGINT, SIGTERM, SIGHUP), two signals,
a kill -9 (then `drdrill gc`), the console pipe closed (`drdrill drill 2>&1 | head`), a listener
or the report builder with a bug, a delete() that fails or lies, a report writer that raises, a
full disk. Each row asserts the verdict, the exit code, the report (or, where no report can be
written, what the harness said) and that nothing of the run is left.

What is left is judged without asking drdrill: the drill runs under tests/integration/reaper.py,
a child subreaper that sees every process of the drill's tree (orphans and new sessions too) and
every port they listened on; the run's state folder and its TMPDIR must be empty afterwards; for
kind, Docker is asked for containers and networks naming the run.

Rows marked `procs` drive a cluster of plain processes (tests/integration/faultkit.py: real
processes on real ports in a real folder, no Kubernetes) so that a row costs seconds; rows marked
`embedded` hit the real phases of the real embedded cluster (converge with its watches open,
verify, a Kubernetes API call in flight, a running subprocess); the `kind` row interrupts a real
`kind create cluster` (run by `nox -s drill-kind`).
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
    """A signal name; SIGKILL (then `drdrill gc`); `twice` (SIGINT, and again in teardown);
    `SIGA+SIGB` (the second right after the first, while it is being reported); `close` (the
    reader of the drill's output goes away)."""
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
    marker: str | None = None
    """After the phase line, wait for a line holding this (e.g. an API call in flight)."""
    lost: tuple[str, ...] = ()
    """Words report.json's `output_lost` must hold (a closed console, a listener bug)."""
    rc: int | None = None
    """The exit code; by default 128 + the signal, 0 passed, 1 failed, 2 broken."""
    cluster: str = "clusters/dev"


def _sig(at: tuple[str, int], act: str, **kw: object) -> Row:
    return Row(at=at, act=act, hit=at[0], words=(f"interrupted by {act}",), **kw)  # type: ignore[arg-type]


def _closed(at: tuple[str, int], **kw: object) -> Row:
    """The console's reader goes away as the phase starts: the drill goes on to the end."""
    return Row(at=at, act="close", lost=("the console closed",),
               words=("the console closed",), **kw)  # type: ignore[arg-type]


PHASES = (("preflight", 1), ("provision", 1), ("bootstrap", 1), ("converge", 1), ("verify", 1),
          ("disaster", 1), ("provision", 2), ("bootstrap", 2), ("converge", 2), ("verify", 2),
          ("report", 1), ("teardown", 1))


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
# The console closed at each phase (`drdrill drill 2>&1 | head`): the drill goes on to the end.
MATRIX |= {f"console-closed-{phase}{'-r2' if rnd == 2 else ''}": _closed((phase, rnd))
           for phase, rnd in PHASES}
MATRIX |= {
    # output that breaks never ends the drill; a bug in the report builder costs no teardown
    "listener-raises": Row(faults="listener-raises", lost=("listener", "injected listener bug"),
                           words=("listener",)),
    "build-report-raises": Row(faults="build-report-raises", writer_bug=True,
                               words=("building the report failed", "injected build_report")),
    # a second signal while the first is being reported
    "SIGINT-then-SIGTERM-while-stopping": Row(at=("converge", 1), act="SIGINT+SIGTERM",
                                              hit="converge", words=("interrupted by SIGINT",)),
    # the real embedded cluster: converge with its watches open, verify, an API call in flight,
    # a running subprocess (with a grandchild), the console closing, bugs in output code
    "embedded-SIGINT-converge-watching": _sig(("converge", 1), "SIGINT", provider="embedded",
                                              delay_s=0.5),
    "embedded-SIGTERM-converge-r2-watching": _sig(("converge", 2), "SIGTERM",
                                                  provider="embedded", delay_s=0.5),
    "embedded-SIGHUP-converge-watching": _sig(("converge", 1), "SIGHUP", provider="embedded",
                                              delay_s=1.0),
    "embedded-SIGINT-verify-api-call": _sig(("verify", 1), "SIGINT", provider="embedded",
                                            faults="slow-api", marker="API call in flight",
                                            delay_s=0.3),
    "embedded-SIGTERM-verify-r2-api-call": _sig(("verify", 2), "SIGTERM", provider="embedded",
                                                faults="slow-api", marker="API call in flight",
                                                delay_s=0.3),
    "embedded-SIGHUP-bootstrap-api-call": _sig(("bootstrap", 1), "SIGHUP",
                                               provider="embedded", faults="slow-api",
                                               marker="API call in flight", delay_s=0.3),
    "embedded-SIGINT-kustomize-subprocess": _sig(("preflight", 1), "SIGINT",
                                                 provider="embedded", faults="slow-subprocess",
                                                 marker="subprocess running", delay_s=0.5),
    "embedded-SIGTERM-kustomize-subprocess": _sig(("preflight", 1), "SIGTERM",
                                                  provider="embedded",
                                                  faults="slow-subprocess",
                                                  marker="subprocess running", delay_s=0.5),
    "embedded-console-closed-provision": _closed(("provision", 1), provider="embedded"),
    "embedded-console-closed-converge": _closed(("converge", 1), provider="embedded"),
    "embedded-console-closed-verify-r2": _closed(("verify", 2), provider="embedded"),
    "embedded-listener-raises": Row(provider="embedded", faults="listener-raises",
                                    lost=("listener",), words=("listener",)),
    "embedded-build-report-raises": Row(provider="embedded", faults="build-report-raises",
                                        writer_bug=True, words=("building the report failed",)),
    "embedded-SIGTERM-then-SIGINT-while-stopping": Row(
        provider="embedded", at=("converge", 1), act="SIGTERM+SIGINT", delay_s=0.5,
        hit="converge",
        words=("interrupted by SIGTERM",)),
}
KIND = {
    # a real `kind create cluster` running when ^C arrives: no container, network or process
    "kind-SIGINT-kind-create": _sig(("provision", 1), "SIGINT", provider="kind", delay_s=4.0),
}


STOP_WITHIN_S = 20.0
"""Signal to exit when the signal lands in preflight (no cluster yet) on a loaded machine; the
program the row holds would take 30 s."""


def _env(state: Path, row: Row, tmp: Path) -> dict[str, str]:
    faults = ",".join(f for f in (row.faults, "procs" if row.provider == "procs" else "") if f)
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "DRDRILL_STATE_DIR": str(state),
            "DRDRILL_FAULT": faults, "TMPDIR": str(tmp),
            "REAPER_KEEP": "1" if row.act == "SIGKILL" or row.leftover or row.keep != "never"
            else "0"}


def _drdrill(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env, cwd=TOP,
                          capture_output=True, text=True, timeout=120)


@dataclass
class Driven:
    rc: int
    said: str
    """Everything the drill printed (up to the moment its console was closed)."""
    reaper: dict
    """tests/integration/reaper.py's judgement: every process and port of the drill's tree."""
    stop_s: float
    """From the act (signal, closed console) until the drill had exited."""


def _drive(row: Row, repo: Path, report_dir: Path, env: dict[str, str],
           reaper_out: Path) -> Driven:
    """Run the drill; act when the row's phase starts; -> exit code, output, the reaper's view."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.reaper", str(reaper_out),
         sys.executable, "-m", "tests.integration.faultkit", "drill", "--provider", row.provider,
         "--repo", str(repo), "--cluster", row.cluster, "--report-dir", str(report_dir),
         "--keep-cluster", row.keep], env=env, cwd=TOP, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen: list[str] = []
    count = 0
    drill_pid = 0
    acted = row.at is None
    armed = False  # the phase started; waiting for the row's marker
    acted_at = time.monotonic()
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("reaper: drill pid "):
            drill_pid = int(line.split()[-1])
        if acted:
            if row.act == "twice" and "phase teardown ..." in line:
                os.kill(drill_pid, signal.SIGINT)
            continue
        if row.at is not None and not armed and f"phase {row.at[0]} ..." in line:
            count += 1
            armed = count == row.at[1]
        if armed and (row.marker is None or row.marker in line):
            time.sleep(row.delay_s)
            acted, acted_at = True, time.monotonic()
            if row.act == "close":
                break
            first, _, second = (row.act or "").partition("+")
            sig = signal.SIGINT if row.act == "twice" else getattr(signal, first)
            os.kill(drill_pid, sig)
            if second:  # at once: it lands while the first unwinds and is being reported
                os.kill(drill_pid, getattr(signal, second))
            if sig == signal.SIGKILL:
                break
    if row.act == "close":
        proc.stdout.close()  # the `| head` has read its lines and exits
        proc.wait(timeout=300)
        rest = ""
    else:
        rest, _ = proc.communicate(timeout=300)
    assert acted, "the drill never reached " + repr(row.at) + ":\n" + "".join(seen)
    stop_s = time.monotonic() - acted_at
    reaper = json.loads(reaper_out.read_text())
    return Driven(reaper["rc"], "".join(seen) + (rest or ""), reaper, stop_s)


def _ports(output: str, report: dict | None, reaper: dict) -> set[int]:
    ports = {int(p) for p in re.findall(r"serving http://127\.0\.0\.1:(\d+)/", output)}
    ports |= set(reaper["ports"])
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
    """Containers and networks whose name or labels name the run (asked from Docker)."""
    if shutil.which("docker") is None:
        return []
    found = []
    for what, fmt in (("ps", "{{.Names}} {{.Labels}}"), ("network", "{{.Name}} {{.Labels}}")):
        argv = ["docker", what, "ls", "-a" if what == "ps" else "--no-trunc", "--format", fmt]
        if what == "ps":
            argv = ["docker", "ps", "-a", "--format", fmt]
        res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        found += [f"{what} {line.split()[0]}" for line in res.stdout.splitlines()
                  if run_id.lower() in line.lower()]  # kind lower-cases its cluster names
    return found


def _alive(seen: list[dict]) -> list[str]:
    """Processes the reaper saw in the drill's tree that still run (same pid and start time)."""
    from tests.integration.reaper import _stat

    out = []
    for p in seen:
        st = _stat(p["pid"])
        if st is not None and st[1] == p["start"]:
            out.append(f"process {p['pid']} ({p['argv'][:80]})")
    return out


def _left(run_id: str, state: Path, tmp: Path, ports: set[int], seen: list[dict]) -> list[str]:
    left = _alive(seen)
    left += [f"port {p}" for p in sorted(ports) if port_in_use(p)]
    left += [f"folder {state / run_id}"] if (state / run_id).exists() else []
    left += [f"temporary {p}" for p in sorted(tmp.iterdir())] if tmp.exists() else []
    return left + _containers(run_id)


def _settle(run_id: str, state: Path, tmp: Path, ports: set[int], seen: list[dict]) -> list[str]:
    """What is left, given a moment for killed processes to be reaped and sockets to close."""
    for _ in range(20):
        left = _left(run_id, state, tmp, ports, seen)
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


def _expected_rc(row: Row) -> int:
    if row.rc is not None:
        return row.rc
    if row.act == "SIGKILL":
        return -signal.SIGKILL
    if row.act and row.act not in ("close", "SIGKILL") and row.verdict == "broken":
        first = "SIGINT" if row.act == "twice" else row.act.split("+")[0]
        return 128 + getattr(signal, first)
    return {"passed": 0, "failed": 1}.get(row.verdict or "", 2)


@pytest.mark.parametrize("case", list(MATRIX))
def test_fault(case: str, chain3: Path, tmp_path: Path) -> None:
    _check(MATRIX[case], chain3, tmp_path)


@pytest.mark.kind
@pytest.mark.slow
@pytest.mark.parametrize("case", list(KIND))
def test_fault_kind(case: str, fixture_repo, tmp_path: Path) -> None:
    from harness.providers.kind import check_docker

    check_docker()  # no Docker is a failure here, never a skip: .ci/run must run this row
    _check(KIND[case], fixture_repo("kind-apps"), tmp_path)


def _check(row: Row, repo: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    tmp = tmp_path / "tmp"
    env = _env(state, row, tmp)
    report_dir = tmp_path / "report"
    with contextlib.ExitStack() as stack:
        if row.disk_full and not stack.enter_context(_full_disk(report_dir)):
            env["DRDRILL_FAULT"] += ",enospc"
        driven = _drive(row, repo, report_dir, env, tmp_path / "reaper.json")
        report = json.loads((report_dir / "report.json").read_text()) \
            if (report_dir / "report.json").exists() else None
    rc, said = driven.rc, driven.said
    m = re.search(r"\] run (\S+): ", said)
    assert m, said
    run_id = m.group(1)
    assert report is None or report["run_id"] == run_id
    ports = _ports(said, report, driven.reaper)
    seen = driven.reaper["seen"]
    assert row.writer_bug or "Traceback" not in said, said
    assert rc == _expected_rc(row), (rc, said)
    if "slow-subprocess" in row.faults:
        # the signal stops the drill now: the program (held 30 s) in a worker thread does not
        assert driven.stop_s < STOP_WITHIN_S, (driven.stop_s, said)

    if row.verdict is None:
        assert report is None, said
        for word in row.words:
            assert word in said, f"{word!r} missing from:\n{said}"
    else:
        assert report is not None, said
        assert report["verdict"] == row.verdict, (report["error"], said)
        assert [p["name"] for p in report["phases"]][-2:] == ["report", "teardown"]
        if row.hit:
            hit = [p for p in report["phases"] if p["name"] == row.hit]
            assert hit and hit[-1]["outcome"] == "broken", report["phases"]
        for word in row.words:
            assert word in (report["error"] or ""), f"{word!r} missing: {report['error']}"
        for word in row.lost:
            assert any(word in x for x in report["output_lost"]), report["output_lost"]
        if row.lost:  # the drill went on to the end: every phase ran
            assert [p["name"] for p in report["phases"]].count("verify") == 2, report["phases"]
        signalled = row.act and row.act not in ("close", "SIGKILL") and row.verdict == "broken"
        assert report["interrupted_by"] == (
            ("SIGINT" if row.act == "twice" else row.act.split("+")[0])  # type: ignore[union-attr]
            if signalled else None)
    if row.act == "twice":
        assert "SIGINT ignored: teardown is running" in said, said
    if row.act and "+" in row.act:
        second = row.act.split("+")[1]
        assert f"{second} ignored: " in said, said  # the drill is stopping / teardown
    if row.act == "SIGTERM" and row.verdict == "passed":
        assert "SIGTERM ignored" in said, said

    if row.act == "SIGKILL":
        assert _left(run_id, state, tmp, ports, seen), "a killed run leaves its cluster behind"
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
        assert _alive(seen), "the report names leftovers that exist"
        res = _drdrill(env, "gc", "--run-id", run_id)
        assert f"removed run {run_id}" in res.stdout, res.stdout + res.stderr
    elif row.keep == "always":
        assert report is not None and not report["leftovers"]
        assert _alive(seen), "the kept cluster runs"
        res = _drdrill(env, "gc")
        assert f"left alone: run {run_id}: kept" in res.stdout
        assert f"removed run {run_id}" not in res.stdout
        assert _alive(seen), "a kept cluster survives `drdrill gc`"
        res = _drdrill(env, "gc", "--dry-run")
        assert f"left alone: run {run_id}: kept" in res.stdout, res.stdout
        res = _drdrill(env, "gc", "--run-id", run_id)
        assert f"removed run {run_id}" in res.stdout, res.stdout
    else:
        assert not driven.reaper["left"], ("left by the drill's process tree",
                                          driven.reaper["left"], said)
        if report is not None:
            assert not report["leftovers"], report["leftovers"]
    assert not _settle(run_id, state, tmp, ports, seen), said
