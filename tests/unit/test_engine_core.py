"""The engine's pieces without a cluster: the context stack, interrupts, gc's liveness rule,
the redaction of every secret form."""

from __future__ import annotations

import json
import os
import signal

import pytest

from harness.core.interrupts import Interrupts
from harness.core.resources import Resources
from harness.errors import DrillInterrupted, HarnessError, WaitTimeout
from harness.gc import KEPT_FILE, OWNER_FILE, gc
from harness.procs import boot_id, owner_token, pid_namespace, token_liveness
from harness.report.redact import redact
from tests.conftest import planted_secrets

pytestmark = pytest.mark.unit


def test_stack_releases_in_reverse_and_a_failing_release_does_not_stop_the_rest():
    done: list[str] = []
    res = Resources()
    res.push("folder", lambda: done.append("folder"))
    res.push("git", lambda: done.append("git"))

    def broken() -> None:
        raise OSError("device busy")

    res.push("cluster", broken, leftovers=lambda: ["process 42 (etcd)"])
    out = res.close()
    assert done == ["git", "folder"]
    assert out.failures == ["cluster: OSError: device busy"]
    assert out.leftovers == ["process 42 (etcd)"] and not out.complete


def test_stack_keeps_keepable_resources_and_releases_one_early():
    done: list[str] = []
    res = Resources()
    res.push("folder", lambda: done.append("folder"), keepable=True)
    cluster = res.push("cluster", lambda: done.append("cluster"), keepable=True,
                       leftovers=lambda: [])
    assert res.release(cluster) == [] and done == ["cluster"]
    res.push("git", lambda: done.append("git"))
    out = res.close(keep=True)
    assert done == ["cluster", "git"] and out.kept == ["folder"] and out.complete


def test_an_early_release_that_leaves_something_stays_on_the_stack():
    calls: list[str] = []
    res = Resources()
    cluster = res.push("cluster", lambda: calls.append("delete"),
                       leftovers=lambda: ["container c1"])
    assert res.release(cluster) == ["container c1"]
    out = res.close()
    assert calls == ["delete", "delete"] and out.leftovers == ["container c1"]


def _deliver(s: signal.Signals) -> None:
    os.kill(os.getpid(), s)
    signal.sigtimedwait([], 0.1)  # let the handler run


def test_interrupts_are_base_exceptions_and_a_swallowed_one_is_raised_again():
    assert not issubclass(DrillInterrupted, Exception)
    assert not issubclass(DrillInterrupted, KeyboardInterrupt)  # pytest must not stop
    assert issubclass(WaitTimeout, HarnessError)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        with Interrupts() as sig, pytest.raises(DrillInterrupted, match=s.name) as caught:
            _deliver(s)
        assert caught.value.exit_code == 128 + s  # 143, 129, 130
    with Interrupts() as sig:
        try:
            _deliver(signal.SIGTERM)
        except Exception:
            pytest.fail("swallowed")
        except DrillInterrupted:
            pass
        with pytest.raises(DrillInterrupted, match="SIGTERM"):
            sig.check()  # the first signal is remembered at the next phase boundary


def test_from_the_first_interrupt_on_further_signals_are_noted_and_ignored():
    said: list[str] = []
    with Interrupts(said.append) as sig:
        with pytest.raises(DrillInterrupted, match="SIGINT"):
            _deliver(signal.SIGINT)
        _deliver(signal.SIGINT)  # while the first is being reported: must not escape
        _deliver(signal.SIGTERM)
        assert sig.first == "SIGINT" and sig.received == ["SIGINT", "SIGINT", "SIGTERM"]
        assert "SIGINT ignored: the drill is stopping (SIGINT)" in said[0]
    said.clear()
    with Interrupts(said.append) as sig:
        sig.ignore()  # teardown
        _deliver(signal.SIGHUP)
        sig.check()
        assert said and "SIGHUP ignored: teardown is running" in said[0]


def test_owner_liveness_needs_the_same_boot_and_pid_namespace(tmp_path):
    assert token_liveness(owner_token()) == "alive"
    pid, start = owner_token().split(":")[:2]
    assert token_liveness(f"{pid}:{int(start) + 1}:{boot_id()}:{pid_namespace()}") == "dead"
    assert token_liveness(f"{pid}:{start}:{boot_id()}:4026530000") == "unknown"  # other ns
    assert token_liveness(f"{pid}:{start}:other-boot:{pid_namespace()}") == "unknown"
    assert token_liveness(f"{pid}:{start}") == "unknown"  # an old token without them
    runs = tmp_path / "runs"
    for rid, token, kept in (("dead", f"1:1:{boot_id()}:{pid_namespace()}", False),
                             ("foreign", f"1:1:{boot_id()}:4026530000", False),
                             ("kept", f"1:1:{boot_id()}:{pid_namespace()}", True),
                             ("live", owner_token(), False)):
        (runs / rid).mkdir(parents=True)
        (runs / rid / OWNER_FILE).write_text(json.dumps({"owner": token}))
        if kept:
            (runs / rid / KEPT_FILE).write_text("{}")
    ours = {"dead", "foreign", "kept", "live"}  # gc also sees other runs of this machine

    def swept(**kw: object) -> set[str]:
        return {s.run_id for s in gc(runs, dry_run=True, **kw).swept} & ours  # type: ignore[arg-type]

    res = gc(runs, dry_run=True)
    assert {k: sorted(set(v) & ours) for k, v in res.left.items()} == {
        "alive": ["live"], "kept": ["kept"], "unknown": ["foreign"], "young": []}
    assert swept() == {"dead"}
    assert swept(older_than_s=3600) == set()  # just made: not stale
    assert swept(older_than_s=0) == {"dead", "foreign"}
    assert swept(include_kept=True) == {"dead", "kept"}
    assert [s.run_id for s in gc(runs, run_id="kept").swept] == ["kept"]
    assert not (runs / "kept").exists() and (runs / "live").exists()
    assert gc(runs, run_id="live").left["alive"] == ["live"]


def test_every_secret_form_is_redacted():
    text, markers = planted_secrets()
    out = redact(text)
    assert not [m for m in markers if m in out], out
    assert "K3S_TOKEN=[REDACTED]" in out and "TOKEN=[REDACTED]" in out
    # ordinary flags and words survive
    flags = "--service-account-key-file=/pki/sa.key --requeue-dependency=2s encoding: utf-8"
    assert redact(flags) == flags


@pytest.mark.parametrize("token", ["ghp_" + "a1B2c3D4e5" * 4, "github_pat_" + "11AbC_dE9f" * 5,
                                   "glpat-" + "xY9_zW8-vU" * 2])
def test_a_bare_forge_token_is_redacted(token):
    out = redact(f"fetch failed for https://github.com/o/r?access_token={token} ({token})")
    assert token not in out and out.count("[REDACTED]") == 2
    assert redact("ghp_short and github_pat") == "ghp_short and github_pat"  # not token-shaped


def test_gc_says_what_it_could_not_remove_and_exits_non_zero(monkeypatch, capsys):
    from harness import gc as gc_mod
    from harness.cli import main

    calls: list[tuple[str, ...]] = []

    def docker(*args: str) -> str | None:
        calls.append(args)
        return None if args[:1] == ("rm",) else ""  # docker rm fails, network rm works

    monkeypatch.setattr(gc_mod, "_docker", docker)
    assert gc_mod.remove_docker([("container", "c1"), ("network", "n1")]) == ["container c1"]
    assert calls == [("rm", "-f", "-v", "c1"), ("network", "rm", "n1")]

    swept = gc_mod.Swept("r1", (), None, ("network n1",), ("container c1",))
    monkeypatch.setattr(gc_mod, "gc", lambda *a, **k: gc_mod.GcResult(swept=[swept]))
    assert main(["gc"]) == 1
    out = capsys.readouterr()
    assert "removed run r1: 0 processes, network n1" in out.out and "c1" not in out.out
    assert "could not remove: run r1: container c1" in out.err
