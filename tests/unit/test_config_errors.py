from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import Config
from harness.errors import CommandError, ConfigError, DependencyCycleError, RepoError
from harness.gitops.model import find_cycle

pytestmark = pytest.mark.unit


def test_env_table_maps_to_fields(tmp_path):
    cfg = Config.from_env({"DRDRILL_TOOLS_DIR": str(tmp_path), "DRDRILL_ALLOW_BUILD": "no",
                           "DRDRILL_CACHE_DIR": "/c"})
    assert cfg.tools_dir == tmp_path and cfg.allow_build is False
    assert cfg.tools_cache == Path("/c/tools")


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError) as err:
        Config.from_env({"DRDRILL_ALLOW_BUILD": "maybe"})
    assert "DRDRILL_ALLOW_BUILD" in str(err.value)


def test_overrides_beat_env(tmp_path):
    cfg = Config.from_env({"DRDRILL_TOOLS_DIR": "/x"}, tools_dir=tmp_path)
    assert cfg.tools_dir == tmp_path


def test_repo_error_names_file_object_and_fix():
    err = RepoError("bad", file="a.yaml", obj="Kustomization/ns/x", fix="do y")
    assert "file a.yaml" in str(err) and "object Kustomization/ns/x" in str(err)
    assert "fix: do y" in str(err)


def test_command_error_keeps_output():
    err = CommandError(["git", "push"], 128, "", "fatal: nope\n")
    assert err.returncode == 128 and "fatal: nope" in str(err)


@pytest.mark.parametrize(("graph", "cycle"), [
    ({"a": ["b"], "b": ["c"], "c": []}, None),
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
    ({"a": ["a"]}, ["a", "a"]),
    ({"x": ["a"], "a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
])
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


def test_cycle_error_message():
    err = DependencyCycleError(["K/a", "K/b", "K/a"], file="c.yaml")
    assert "K/a -> K/b -> K/a" in str(err) and err.fix
