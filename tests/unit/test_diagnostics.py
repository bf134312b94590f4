"""Provider log dumps reach the report folder only through the redaction step."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.diagnostics import collect_diagnostics

pytestmark = pytest.mark.unit

TOKEN = "K3S_TOKEN=K10abc123::server:supersecretvalue"


class Dumper:
    """Dumps three logs: one with a secret, one that cannot be read, one plain."""

    def dump_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "k3s.log").write_text(f"starting with {TOKEN}\n")
        bad = dest / "broken.log"
        bad.mkdir()  # reading it fails
        (dest / "kwok.log").write_text("node up\n")
        return [dest / "k3s.log", bad, dest / "kwok.log"]


def test_logs_are_redacted_on_their_way_and_one_bad_file_does_not_stop_the_rest(tmp_path):
    report, scratch = tmp_path / "report", tmp_path / "run" / "dumps"
    got = collect_diagnostics(Dumper(), None, report, "round1", scratch)  # type: ignore[arg-type]
    logs = report / "diagnostics" / "round1" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["k3s.log", "kwok.log"]
    text = (logs / "k3s.log").read_text()
    assert "supersecretvalue" not in text and "[REDACTED]" in text
    assert got["round1/logs/kwok"] == "diagnostics/round1/logs/kwok.log"
    assert not any(p.is_file() for p in scratch.rglob("*")), "raw copies are gone"
    assert not any("supersecretvalue" in p.read_text() for p in report.rglob("*")
                   if p.is_file())
