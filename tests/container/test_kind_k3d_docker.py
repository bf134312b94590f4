"""kind/k3d pieces that need a real Docker engine but no cluster image: the Git server reached
from inside a container on the run's network (through the gateway relay), and the real kind
CLI's failure when it cannot get a node image."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.config import Config
from harness.errors import CommandError
from harness.gitserver import GitServer, resolve_revision
from harness.providers import ProviderContext
from harness.providers import kind as kind_mod
from tests.container import labhost as lh
from tests.container.conftest import SESSION_RUN_PREFIX

pytestmark = pytest.mark.container


def _ctx(tmp_path, run_id, **options):
    return ProviderContext(run_id=run_id, cluster_name="r1", workdir=tmp_path / "r1",
                           config=Config.from_env(state_dir=tmp_path / "state"),
                           options=options)


def test_git_server_is_reachable_from_a_container_on_the_run_network(lab_image, fixture_repo,
                                                                     tmp_path):
    run_id = f"{SESSION_RUN_PREFIX}-git"
    provider = kind_mod.KindProvider(_ctx(tmp_path, run_id))
    provider._created_network = kind_mod.ensure_network(provider.network, run_id)
    git = GitServer(resolve_revision(fixture_repo("chain3")), tmp_path / "git").start()
    try:
        url = provider.git_url(git.url)
        gateway = kind_mod.network_gateway(kind_mod.inspect_network(provider.network))
        assert url.startswith(f"http://{gateway}:") and url.endswith("/repo.git")
        host_port = url.split("/")[2]
        h, p = host_port.split(":")
        script = (f"exec 3<>/dev/tcp/{h}/{p}; printf 'GET /repo.git/info/refs?service="
                  "git-upload-pack HTTP/1.0\\r\\nHost: git\\r\\n\\r\\n' >&3; cat <&3")
        res = subprocess.run(
            ["docker", "run", "--rm", "--network", provider.network,
             "--label", f"{lh.RUN_ID_LABEL}={run_id}", lab_image, "bash", "-c", script],
            capture_output=True, timeout=60, check=False)
        out = res.stdout.decode(errors="replace")
        assert " 200 " in out.splitlines()[0], out + res.stderr.decode(errors="replace")
        assert "refs/heads/main" in out
    finally:
        git.stop()
        provider.delete()
    assert not lh.networks_with_label(run_id) and not lh.containers_with_label(run_id)


def test_real_kind_without_a_node_image_fails_clearly_and_cleans_up(lab_image, tmp_path):
    """A node image that exists nowhere (no registry here, and a tag nobody publishes): the
    real kind CLI fails, the error keeps kind's own message and argv, and the provider removes
    its network. kind is resolved as the drill resolves it (PATH, else the pinned kind in the
    cache), so this runs whether or not kind is on PATH."""
    run_id = f"{SESSION_RUN_PREFIX}-kind"
    provider = kind_mod.KindProvider(_ctx(tmp_path, run_id,
                                          image=f"drdrill/kind-node:absent-{run_id}"))
    assert provider.cli_binary()  # the pinned kind, built if need be: never a skip
    with pytest.raises(CommandError) as caught:
        provider.create()
    exc = caught.value
    assert Path(exc.argv[0]).name == "kind" and exc.argv[1:3] == ["create", "cluster"]
    assert "image" in str(exc) or "pull" in str(exc), str(exc)
    assert not lh.networks_with_label(run_id)
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert not [n for n in names if n.startswith(provider.cluster)]


def test_gc_sweeps_labelled_containers_and_networks_of_dead_runs_only(lab_image, tmp_path):
    """The backstop for runs killed with -9: `drdrill gc` removes containers and networks
    carrying a run id whose owner process is gone, and leaves a live run's alone."""
    from harness.gc import OWNER_LABEL, gc
    from harness.procs import owner_token

    dead = f"{SESSION_RUN_PREFIX}-dead"
    live = f"{SESSION_RUN_PREFIX}-live"
    for rid, owner in ((dead, "1:1"), (live, owner_token())):
        subprocess.run(["docker", "network", "create", "--label", f"{lh.RUN_ID_LABEL}={rid}",
                        "--label", f"{OWNER_LABEL}={owner}", f"drdrill-{rid}-net"],
                       check=True, capture_output=True)
        # kind's node containers carry no label of ours: found through the network
        subprocess.run(["docker", "create", "--name", f"drdrill-{rid}-node", "--network",
                        f"drdrill-{rid}-net", lab_image], check=True, capture_output=True)
    try:
        res = gc(tmp_path / "runs", run_id=dead)
        assert [s.run_id for s in res.swept] == [dead]
        assert set(res.swept[0].docker) == {f"container drdrill-{dead}-node",
                                            f"network drdrill-{dead}-net"}
        assert not lh.networks_with_label(dead)
        res = gc(tmp_path / "runs", run_id=live)
        assert res.left["alive"] == [live] and not res.swept and lh.networks_with_label(live)
    finally:
        subprocess.run(["docker", "rm", "-f", f"drdrill-{live}-node", f"drdrill-{dead}-node"],
                       capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", f"drdrill-{live}-net"], capture_output=True,
                       check=False)
