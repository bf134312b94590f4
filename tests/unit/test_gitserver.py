"""The local Git server with real git: clone works, the branch under test cannot move while
other branches take pushes (image automation), bad repos fail clearly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.errors import NotAGitRepoError
from harness.gitserver import GitServer, repo_identity, resolve_revision
from tests.conftest import git_commit_tree

pytestmark = pytest.mark.unit


def test_serves_the_commit_under_test_and_takes_pushes_only_to_other_branches(tmp_path):
    src = tmp_path / "src"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.yaml").write_text("a: 1\n")
    sha = git_commit_tree([tmp_path / "in"], src)
    (src / "b.yaml").write_text("uncommitted: true\n")
    rev = resolve_revision(src)
    assert rev.sha == sha
    with GitServer(rev, tmp_path / "srv") as server:
        assert server.url.startswith("http://127.0.0.1:")
        clone = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", server.url, str(clone)], check=True)
        head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        assert head == sha
        assert not (clone / "b.yaml").exists()
        env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@example.invalid",
               "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@example.invalid",
               "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
        (clone / "c.yaml").write_text("c: 1\n")
        subprocess.run(["git", "-C", str(clone), "add", "c.yaml"], check=True, env=env)
        subprocess.run(["git", "-C", str(clone), "commit", "-qm", "c"], check=True, env=env)
        moved = subprocess.run(["git", "-C", str(clone), "push", "origin", "HEAD:refs/heads/main"],
                               capture_output=True, text=True, env=env)
        assert moved.returncode != 0 and "revision under test" in moved.stderr
        pushed = subprocess.run(["git", "-C", str(clone), "push", "origin",
                                 "HEAD:refs/heads/image-updates"],
                                capture_output=True, text=True, env=env)
        assert pushed.returncode == 0, pushed.stderr
        served = subprocess.run(["git", "ls-remote", server.url], check=True,
                                capture_output=True, text=True).stdout
        assert f"{sha}\trefs/heads/main" in served and "refs/heads/image-updates" in served
        assert server.pushes == 2 and server.branches() == ["image-updates", "main"]
    assert not (tmp_path / "srv" / "repo.git").exists()


@pytest.mark.parametrize("url", [
    "https://github.com/org/fleet.git", "https://github.com/org/fleet",
    "git@github.com:org/fleet.git", "ssh://git@github.com:22/org/fleet.git",
    "https://x-access-token:ghs_secret@github.com/org/fleet.git",
    "https://gitlab-ci-token:glcbt-64_secret@GitHub.com/org/fleet/",
])
def test_a_remote_in_any_spelling_is_one_identity_without_credentials(url):
    assert repo_identity(url, Path("/home/runner/work/fleet/fleet")) == "github.com/org/fleet"


def test_identity_of_a_repo_without_remote_is_its_name_and_resolve_reads_origin(tmp_path):
    assert repo_identity(None, Path("/builds/abc/home-ops")) == "home-ops"
    assert repo_identity("/srv/git/home-ops.git", Path("/x/y")) == "home-ops"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.yaml").write_text("a: 1\n")
    git_commit_tree([tmp_path / "in"], tmp_path / "ws-1" / "fleet")
    assert resolve_revision(tmp_path / "ws-1" / "fleet").identity == "fleet"
    subprocess.run(["git", "-C", str(tmp_path / "ws-1" / "fleet"), "remote", "add", "origin",
                    "git@example.org:team/fleet.git"], check=True)
    assert resolve_revision(tmp_path / "ws-1" / "fleet").identity == "example.org/team/fleet"


def test_not_a_git_repo_is_named(tmp_path):
    with pytest.raises(NotAGitRepoError) as err:
        resolve_revision(tmp_path)
    assert str(tmp_path) in str(err.value) and "git init" in str(err.value)


def test_unknown_revision(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.yaml").write_text("a: 1\n")
    git_commit_tree([tmp_path / "in"], tmp_path / "r")
    with pytest.raises(NotAGitRepoError) as err:
        resolve_revision(tmp_path / "r", "no-such-branch")
    assert "no-such-branch" in str(err.value)


def test_pause_is_an_outage_and_resume_serves_the_same_url_again(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.yaml").write_text("a: 1\n")
    git_commit_tree([tmp_path / "in"], tmp_path / "src")
    with GitServer(resolve_revision(tmp_path / "src"), tmp_path / "srv") as server:
        url = server.url
        server.pause()
        down = subprocess.run(["git", "ls-remote", url], capture_output=True, text=True,
                              timeout=30)
        assert down.returncode != 0
        assert server.resume().url == url
        subprocess.run(["git", "ls-remote", url], check=True, capture_output=True, timeout=30)
