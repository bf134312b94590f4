"""`drdrill gc` against real Docker containers (started with testcontainers): it removes a dead
local run's containers, and leaves alone a live run's, a kept cluster's, and those whose owner
lives in another pid namespace (a CI container on a shared Docker daemon) until --older-than."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from harness.gc import KEEP_LABEL, OWNER_LABEL, RUN_ID_LABEL, gc
from harness.procs import boot_id, owner_token, pid_namespace, process_start_ticks
from tests.container.conftest import SESSION_RUN_PREFIX

pytestmark = pytest.mark.container


def _dead_local_token() -> str:
    proc = subprocess.Popen(["sleep", "30"])
    start = process_start_ticks(proc.pid)
    proc.kill()
    proc.wait()
    return f"{proc.pid}:{start}:{boot_id()}:{pid_namespace()}"


def test_gc_decides_docker_liveness_from_what_it_can_see(lab_image, tmp_path):
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer

    testcontainers_config.ryuk_disabled = True  # Ryuk's image cannot be pulled here; gc is ours
    dead = _dead_local_token()
    owners = {"dead": dead, "foreign": f"1:1:{boot_id()}:4026530000", "kept": dead,
              "live": owner_token()}
    started: dict[str, DockerContainer] = {}
    try:
        for what, owner in owners.items():
            labels = {RUN_ID_LABEL: f"{SESSION_RUN_PREFIX}-gc-{what}", OWNER_LABEL: owner,
                      **({KEEP_LABEL: "always"} if what == "kept" else {})}
            started[what] = DockerContainer(lab_image).with_command("sleep 600").with_kwargs(
                labels=labels).start()
        rid = {what: f"{SESSION_RUN_PREFIX}-gc-{what}" for what in owners}
        runs = tmp_path / "runs"
        res = gc(runs)
        mine = {s.run_id for s in res.swept} & set(rid.values())
        assert mine == {rid["dead"]}
        assert rid["live"] in res.left["alive"] and rid["kept"] in res.left["kept"]
        assert rid["foreign"] in res.left["unknown"]

        def exists(what: str) -> bool:
            return bool(subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label={RUN_ID_LABEL}={rid[what]}"],
                capture_output=True, text=True, check=True).stdout.strip())

        assert not exists("dead") and exists("foreign") and exists("kept") and exists("live")
        res = gc(runs, run_id=rid["foreign"], dry_run=True)
        assert [s.run_id for s in res.swept] == [rid["foreign"]]  # --run-id names it: removable
        res = gc(runs, older_than_s=0, run_id=rid["foreign"])
        assert not exists("foreign")
        res = gc(runs, run_id=rid["kept"])
        assert not exists("kept") and exists("live")
        assert gc(runs, run_id=rid["live"]).left["alive"] == [rid["live"]]
    finally:
        for container in started.values():
            with contextlib.suppress(Exception):
                container.stop()
