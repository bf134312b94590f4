"""The drill's console: a live line on a terminal, a quiet log in CI, phases folded."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from harness.cli.progress import Progress, ci_folding

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _drill(progress: Progress, clock: Clock) -> None:
    """A converge phase: 40 status updates over 60 s and 8 objects turning ready."""
    progress.phase("start:converge", None)
    for i in range(40):
        clock.t = 1.5 * i
        progress(f"converge: {i // 5}/8 ready; waiting on Kustomization/flux-system/apps "
                 f"(dependency) {'x' * 200}")
        if i % 5 == 4:
            progress(f"ready: Kustomization/flux-system/k{i // 5} after {clock.t:.1f}s")
    progress.phase("end:converge", SimpleNamespace(round=2, outcome="passed", duration_s=60.0))


def test_a_log_gets_a_status_line_every_15s_and_one_line_per_object():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, tty=False, folding="none", clock=clock)
    _drill(progress, clock)
    lines = out.getvalue().splitlines()
    status = [line for line in lines if "converge:" in line]
    ready = [line for line in lines if "ready: Kustomization" in line]
    assert len(ready) == 8
    assert 4 <= len(status) <= 5  # 60 s: at 0, 15, 30, 45 s
    assert len(lines) < 20  # was one line per change: 48
    # A status held back is said at the phase's end, unless an object line made it stale.
    assert "ready: Kustomization/flux-system/k7" in lines[-2]
    out = io.StringIO()
    progress = Progress(out, tty=False, folding="none", clock=clock)
    progress.phase("start:converge", None)
    progress("converge: 0/2 ready")
    clock.t += 1
    progress("converge: 1/2 ready; waiting on b")
    progress.phase("end:converge", SimpleNamespace(round=1, outcome="failed", duration_s=1.0))
    assert "converge: 1/2 ready; waiting on b" in out.getvalue().splitlines()[-2]


def test_a_terminal_gets_one_live_line_redrawn_below_each_printed_line():
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, tty=True, folding="none", clock=clock)
    _drill(progress, clock)
    text = out.getvalue()
    # Status updates rewrite the same line; permanent lines are 'phase' and 'ready' only.
    permanent = [line for line in text.split("\n") if line]
    assert len(permanent) == 1 + 8 + 1 + 1  # phase start, 8 ready, last status, phase end
    assert all(len(chunk) <= 150 for line in permanent for chunk in line.split("\r\x1b[2K"))


def test_phases_fold_into_github_groups_and_gitlab_sections():
    out, clock = io.StringIO(), Clock()
    _drill(Progress(out, tty=False, folding="github", clock=clock), clock)
    lines = out.getvalue().splitlines()
    assert lines[0] == "::group::phase converge" and lines[-1] == "::endgroup::"
    out = io.StringIO()
    _drill(Progress(out, tty=False, folding="gitlab", clock=clock, wall=lambda: 1700000000),
           clock)
    text = out.getvalue()
    assert text.startswith("\x1b[0Ksection_start:1700000000:drdrill_phase_converge_1"
                           "[collapsed=true]\r\x1b[0Kphase converge\n")
    assert text.endswith("\x1b[0Ksection_end:1700000000:drdrill_phase_converge_1\r\x1b[0K\n")


def test_the_ci_is_told_by_its_variables_and_secrets_stay_out():
    assert ci_folding({"GITHUB_ACTIONS": "true"}) == "github"
    assert ci_folding({"GITLAB_CI": "true"}) == "gitlab"
    assert ci_folding({}) == "none"
    out = io.StringIO()
    key = "AGE-SECRET-KEY-1QQPZ7G9R4X5ZLJ8M3VN2K6T0Y8W4S9H7F2D5C3B1A0E9G8J7K6L5M4N3P"
    Progress(out, tty=False, folding="none")(f"bootstrap: applied {key}")
    assert key not in out.getvalue() and "bootstrap: applied" in out.getvalue()
