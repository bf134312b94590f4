"""The lab disaster check asks the host: after the wipe, what of the run is still there (its
folder, processes carrying its folder in their environment, k3s's service and API port). The
host here is this machine, the script run by a local shell instead of over SSH."""

from __future__ import annotations

import os
import subprocess
import time
from types import SimpleNamespace

import pytest

from harness.providers.lab import LAB_DIR_ENV, host_leftovers

pytestmark = pytest.mark.unit


class LocalHost:
    spec = SimpleNamespace(name="lab1")

    def run(self, argv: list[str], **kw: object) -> SimpleNamespace:
        return SimpleNamespace(stdout=subprocess.run(argv, capture_output=True, text=True,
                                                     check=False).stdout)


def test_the_host_is_asked_what_the_wipe_left(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    host = LocalHost()
    child = subprocess.Popen(["sleep", "30"], env={**os.environ, LAB_DIR_ENV: str(run_dir)})
    try:
        time.sleep(0.2)
        left = host_leftovers(host, str(run_dir), k3s=False)  # type: ignore[arg-type]
        assert f"folder {run_dir} on lab1" in left
        assert f"process {child.pid} on lab1" in left
    finally:
        child.kill()
        child.wait()
    run_dir.rmdir()
    assert host_leftovers(host, str(run_dir), k3s=False) == []  # type: ignore[arg-type]
