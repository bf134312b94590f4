from __future__ import annotations

import pytest

import harness

pytestmark = pytest.mark.unit


def test_all_is_sorted_and_every_name_resolves():
    assert harness.__all__ == sorted(harness.__all__)
    for name in harness.__all__:
        assert getattr(harness, name) is not None, name


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        harness.no_such_thing  # noqa: B018
