"""Sessions: `nox -s drill` runs the drills, `nox -s tests` the harness's own tests."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

PYTHON = "3.11"


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy (strict on harness/)."""
    _install(session)
    session.run("ruff", "check", "harness", "tests", "scenarios", "noxfile.py")
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The harness's own tests: unit, integration (real embedded cluster) and the drill."""
    _install(session)
    # Build or reuse the pinned binaries once, before xdist workers race for them.
    session.run("drdrill", "tools", "ensure")
    args = session.posargs or ["-n", "2", "tests", "scenarios"]
    session.run("pytest", *args)


@nox.session(python=PYTHON, default=False)
def drill(session: nox.Session) -> None:
    """Run the full-rebuild drill of this repo on the embedded provider; prints the report."""
    _install(session)
    session.run("drdrill", "tools", "ensure")
    args = session.posargs or ["--inputs", "scenarios/inputs/homelab"]
    session.run("drdrill", "drill", *args, env={"PYTHONUNBUFFERED": "1"})


@nox.session(python=PYTHON, default=False)
def scenarios(session: nox.Session) -> None:
    """The drills as pytest scenarios, with Allure results in reports/allure-results."""
    _install(session)
    session.run("drdrill", "tools", "ensure")
    session.run("pytest", "scenarios", "--alluredir", os.path.join("reports", "allure-results"),
                *session.posargs)
