"""Fault injection for the engine: `python -m tests.integration.faultkit drill ARGS` is
`drdrill drill ARGS` with the faults named in DRDRILL_FAULT (comma-separated) switched on.

- `procs`: the `procs` provider (below) and held phases instead of bootstrap/converge/verify:
  a cluster of real processes holding real loopback ports in a real folder, but no Kubernetes,
  so a row of the fault matrix costs seconds. Preflight and disaster are the real actions.
- `delete-fails`: the cluster's delete() raises without removing anything (every round; with
  `delete-fails-r2` only the rebuilt cluster's). Works for `procs` and `embedded`.
- `delete-lies`: delete() forgets one process and says it is done (the bug the disaster check
  has to catch).
- `writer-raises`, `json-writer-raises`: a report writer (HTML / report.json) has a bug.
- `enospc`: the disk is full under the report folder (at the writer boundary: for machines
  where the test cannot mount a tiny tmpfs).
- `plant`: every secret form the harness handles is planted where a drill writes: component
  logs, a phase error, a progress line and a log warning (DRDRILL_PLANT holds the markers).
- `listener-raises`: a phase listener with a bug (raises at the start of converge).
- `build-report-raises`: the report builder has a bug.
- `slow-api`: the first Kubernetes API call of the main thread in each phase is held in flight
  for DRDRILL_HOLD_S (a real call, to the real apiserver, after the hold); the line
  `faultkit: API call in flight in <phase>` says when.
- `slow-subprocess`: each `kustomize build` runs under `sh -c 'sleep 30; exec kustomize ...'`,
  a real subprocess with a grandchild; `faultkit: subprocess running in <phase>` says when.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, ProviderError
from harness.pki import write_secret
from harness.procs import Supervisor, free_ports, port_in_use
from harness.providers import ClusterLifecycle, ProviderContext
from harness.waits import poll_until

log = logging.getLogger("harness.faultkit")
FAULTS = set(filter(None, os.environ.get("DRDRILL_FAULT", "").split(",")))
HOLD_S = float(os.environ.get("DRDRILL_HOLD_S", "0.6"))

LISTENER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
print(sys.argv[2] if len(sys.argv) > 2 else "node up", flush=True)
while True:
    conn, _ = s.accept(); conn.close()
"""


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{{name: procs, cluster: {{server: "https://127.0.0.1:{port}"}}}}]
users: [{{name: admin, user: {{token: "{token}"}}}}]
contexts: [{{name: procs, context: {{cluster: procs, user: admin}}}}]
current-context: procs
"""


def planted() -> str:
    """Every planted secret form, one per line (empty without the `plant` fault)."""
    return os.environ.get("DRDRILL_PLANT", "") if "plant" in FAULTS else ""


def _deletes_fail(ctx: ProviderContext) -> bool:
    return "delete-fails" in FAULTS or ("delete-fails-r2" in FAULTS and ctx.cluster_name == "r2")


class ProcsProvider(ClusterLifecycle):
    """Two real processes listening on loopback ports, logs and a kubeconfig in the workdir."""

    name = "procs"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.workdir = ctx.workdir
        self._sup = Supervisor(ctx.run_id, self.workdir / "logs")
        self._ports: list[int] = []

    @staticmethod
    def required_tools(options: Any) -> tuple[str, ...]:
        return ()

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def _create(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._ports = free_ports(2)
        for i, port in enumerate(self._ports):
            self._sup.start(f"node{i}", [sys.executable, "-c", LISTENER, str(port),
                                         planted() or "node up"])
        poll_until(lambda: (all(port_in_use(p) for p in self._ports), "listening"),
                   timeout_s=20, what="procs nodes listening", abort=self._sup.check)
        token = os.environ.get("DRDRILL_PLANT_TOKEN", "procs-token") if planted() else "t"
        write_secret(self.kubeconfig, KUBECONFIG.format(port=self._ports[0],
                                                        token=token).encode())
        time.sleep(HOLD_S)  # a provision that takes a while, with everything already running

    def delete(self) -> None:
        if _deletes_fail(self.ctx):
            raise ProviderError(f"cluster {self.ctx.cluster_name}: delete refused (injected "
                                "fault)")
        if "delete-lies" in FAULTS and self._sup.children:
            self._sup.children.pop()  # forgotten: it keeps running
        for child in list(reversed(self._sup.children)):  # slowly: a signal lands mid-delete
            self._sup.stop(child.name, grace_s=1.0)
            time.sleep(HOLD_S / 2)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        left = self._sup.leftovers()
        left += [f"port 127.0.0.1:{p} still answers" for p in self._ports if port_in_use(p)]
        return left + ([f"folder {self.workdir}"] if self.workdir.exists() else [])

    def is_up(self) -> bool:
        return any(port_in_use(p) for p in self._ports)

    def dump_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for f in sorted(self._sup.log_dir.glob("*.log")):
            shutil.copyfile(f, dest / f.name)
            out.append(dest / f.name)
        return out

    def describe(self) -> dict[str, Any]:
        if planted():
            log.warning("procs provider describing itself: %s", planted())
        return {"ports": list(self._ports)}


def _embedded_with_faults() -> type:
    from harness.providers.embedded import EmbeddedProvider

    class FaultyEmbedded(EmbeddedProvider):
        def delete(self) -> None:
            if _deletes_fail(self.ctx):
                raise ProviderError(f"cluster {self.ctx.cluster_name}: delete refused "
                                    "(injected fault)")
            super().delete()

    return FaultyEmbedded


def _hold(s: Any, rnd: int) -> None:
    """A phase that takes HOLD_S and does nothing else (no Kubernetes behind `procs`)."""
    if s.api is not None:  # nothing answers the Kubernetes API: diagnostics skip it
        s.api.close()
        s.api = None
    time.sleep(HOLD_S)
    text = planted()
    if text and rnd == 2:
        s.progress(f"verifying with {text}")
        raise HarnessError(f"planted failure: {text}")


_phase: list[str | None] = [None, None]
"""[the phase running now, the phase whose first main-thread API call is still to be held]"""


def _say(line: str) -> None:
    with contextlib.suppress(OSError):  # the console may be closed on purpose
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _install_drill_faults() -> None:
    from harness.core import recorder

    original = recorder.Drill.__post_init__

    def post_init(self: Any) -> None:
        original(self)

        def track(event: str, record: object) -> None:
            kind, _, name = event.partition(":")
            if kind == "start":
                _phase[:] = [name, name]

        self.listeners.insert(0, track)
        if "listener-raises" in FAULTS:
            def buggy(event: str, record: object) -> None:
                if event == "start:converge":
                    raise RuntimeError("injected listener bug")

            self.listeners.append(buggy)

    recorder.Drill.__post_init__ = post_init  # type: ignore[method-assign]
    if "slow-api" in FAULTS:
        from kubernetes.client import rest

        request = rest.RESTClientObject.request

        def slow_request(self: Any, method: str, url: str, *args: Any, **kw: Any) -> Any:
            if threading.current_thread() is threading.main_thread() and _phase[1]:
                _say(f"faultkit: API call in flight in {_phase[1]}: {method} {url}")
                _phase[1] = None
                time.sleep(HOLD_S)
            return request(self, method, url, *args, **kw)

        rest.RESTClientObject.request = slow_request  # type: ignore[method-assign]
    if "slow-subprocess" in FAULTS:
        from harness.command import Command
        from harness.gitops import render

        run = render.run

        def slow_run(cmd: Command, **kw: Any) -> Any:
            if Path(cmd.argv[0]).name == "kustomize":
                _say(f"faultkit: subprocess running in {_phase[0]}: {cmd.argv[0]}")
                cmd = Command(("sh", "-c", 'sleep 30; exec "$0" "$@"', *cmd.argv), cmd.env,
                              cmd.cwd, cmd.timeout_s)
            return run(cmd, **kw)

        render.run = slow_run  # type: ignore[assignment]


def install() -> None:
    from harness import drill as runner
    from harness.providers import registry
    from harness.report import writers

    _install_drill_faults()
    if "build-report-raises" in FAULTS:
        def broken_build(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("injected build_report bug")

        runner.build_report = broken_build  # type: ignore[assignment]

    providers = registry()
    providers["procs"] = ProcsProvider
    if FAULTS & {"delete-fails", "delete-fails-r2"}:
        providers["embedded"] = _embedded_with_faults()
    if "procs" in FAULTS:
        for name in ("bootstrap", "converge", "verify"):
            runner.ACTIONS[name] = _hold

    def broken_writer(report: Any, out_dir: Path) -> Path:
        raise RuntimeError("injected writer bug")

    if "writer-raises" in FAULTS:
        writers.write_html = broken_writer  # type: ignore[assignment]
    if "json-writer-raises" in FAULTS:
        writers.write_json = broken_writer  # type: ignore[assignment]
    if "enospc" in FAULTS:
        from harness.report import redact

        def full(*args: Any, **kwargs: Any) -> tuple[int, str]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        redact.tempfile = types.SimpleNamespace(mkstemp=full)  # only the report writer's


def main(argv: list[str]) -> int:
    install()
    from harness.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

