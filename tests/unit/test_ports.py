"""Listening ports: outside the ephemeral range, and never handed out twice at once."""

from __future__ import annotations

import socket

import pytest

from harness import procs

pytestmark = pytest.mark.unit


def test_ports_come_from_below_the_ephemeral_range_and_are_reserved(tmp_path, monkeypatch):
    monkeypatch.setenv("DRDRILL_CACHE_DIR", str(tmp_path))
    span = procs._listen_range()
    if span is None:
        pytest.skip("the kernel's ephemeral range leaves no room below it")
    first = procs.free_ports(20)
    second = procs.free_ports(20)
    assert len(set(first)) == 20 and not set(first) & set(second)
    assert all(span[0] <= p <= span[1] for p in first + second)
    assert (tmp_path / "ports.json").is_file()


def test_a_port_someone_listens_on_is_never_handed_out(tmp_path, monkeypatch):
    monkeypatch.setenv("DRDRILL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(procs, "_listen_range", lambda: (40000, 40001))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 40000))
        s.listen()
        assert procs.free_ports(1) == [40001]
        # both taken now (one listening, one reserved): the kernel picks instead
        assert procs.free_ports(1) not in ([40000], [40001])


def test_expired_reservations_are_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("DRDRILL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(procs, "_listen_range", lambda: (40002, 40002))
    monkeypatch.setattr(procs, "RESERVE_S", -1.0)
    assert procs.free_ports(1) == [40002]
    assert procs.free_ports(1) == [40002]
