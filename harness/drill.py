"""Moved to harness.core.recorder; kept so that code written against the old path still runs."""

from harness.core.recorder import Drill, outcome_of, round_s, utcnow_iso

__all__ = ["Drill", "outcome_of", "round_s", "utcnow_iso"]
