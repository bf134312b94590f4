"""Everything drdrill prints goes through the one redaction step: preflight and inventory too,
whose Markdown is meant for pull-request comments."""

from __future__ import annotations

import pytest

from tests.integration.test_preflight import cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kustomize():
    """The pinned kustomize, resolved before the CLI runs (it would build it otherwise)."""
    from harness.config import Config
    from harness.tools import ensure_tools

    return ensure_tools(Config.from_env(), ("kustomize",))["kustomize"].path


@pytest.mark.usefixtures("kustomize")
def test_preflight_and_inventory_output_is_redacted(tmp_path):
    """A Git URL with a token in it (a deploy token pasted into a GitRepository) must not reach
    a PR comment or a CI log: text, --markdown and --json of both commands are redacted."""
    import os
    import subprocess

    from tests.conftest import FIXTURE_REPOS, GIT_ENV, git_commit_tree

    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    repo = tmp_path / "leaky"
    git_commit_tree([FIXTURE_REPOS / "unreachable-remote"], repo)
    remote = repo / "clusters" / "dev" / "remote.yaml"
    remote.write_text(remote.read_text().replace(
        "http://127.0.0.1:9/upstream.git", f"https://deploy:{token}@github.com/example/fleet"))
    subprocess.run(["git", "-C", str(repo), "commit", "-qam", "token"], check=True,
                   env={**os.environ, **GIT_ENV})
    for command in ("preflight", "inventory"):
        for fmt in ((), ("--markdown",), ("--json",)):
            res = cli(command, "--repo", repo, "--cluster", "clusters/dev", *fmt)
            assert "github.com/example/fleet" in res.stdout, (command, fmt, res.stdout)
            assert token not in res.stdout + res.stderr, (command, fmt)
            assert "[REDACTED]" in res.stdout, (command, fmt, res.stdout)
