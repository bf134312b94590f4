"""Sessions: `nox -s drill` runs the drills, `nox -s tests` the harness's own tests."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

# Sessions use the Python that runs nox (>= 3.11, checked by pip through requires-python).


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy (strict on harness/)."""
    _install(session)
    session.run("ruff", "check", "harness", "tests", "scenarios", "noxfile.py")
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The harness's own tests: unit, integration (real embedded cluster) and the drill."""
    _install(session)
    # Build or reuse the pinned binaries once, before xdist workers race for them.
    session.run("drdrill", "tools", "ensure")
    # The registry mirror's tests run two registries (mirror and a stand-in upstream).
    session.run("drdrill", "tools", "ensure", "--only", "registry")
    # The live kind/k3d drills have their own sessions (drill-kind, drill-k3d).
    args = session.posargs or ["-n", "2", "-m", "not kind and not k3d", "tests", "scenarios"]
    session.run("pytest", *args)


@nox.session(default=False)
def drill(session: nox.Session) -> None:
    """A drill of this repo on the embedded provider (`-- --scenario NAME`); prints the report."""
    _install(session)
    session.run("drdrill", "tools", "ensure")
    args = list(session.posargs)
    if "--inputs" not in args and "--repo" not in args:  # the sample repo's manual inputs
        args += ["--inputs", "scenarios/inputs/homelab"]
    session.run("drdrill", "drill", *args, env={"PYTHONUNBUFFERED": "1"})


@nox.session(default=False)
def scenarios(session: nox.Session) -> None:
    """Every scenario drill (scenarios/) with Allure results in reports/allure-results."""
    _install(session)
    session.run("drdrill", "tools", "ensure")
    session.run("pytest", "-n", "2", "scenarios", "--alluredir",
                str(Path("reports") / "allure-results"), *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """drdrill against kubectl wait and the flux CLI, and how drills scale (drdrill bench)."""
    _install(session)
    session.run("drdrill", "tools", "ensure")
    session.run("drdrill", "tools", "ensure", "--only", "flux")  # the flux CLI peer
    session.run("drdrill", "bench", *session.posargs)



# The Allure command line from the npm registry: a zip of jars, no install scripts, no
# dependencies, nothing downloaded when it runs; it needs Java 8+ on PATH.
@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Allure 3 report of the drills under reports/ (or the given folders), history carried."""
    _install(session)
    dirs = session.posargs or ["reports"]
    # Exit 1 is the RTO quality gate failing: the report is written all the same.
    session.run("drdrill", "report", "allure", *dirs, "--history",
                str(Path("reports", "allure-history.jsonl")), "--out",
                str(Path("reports", "allure-report")), success_codes=[0, 1])
    session.log(f"Allure 3 report: {Path('reports', 'allure-report', 'index.html').resolve()} "
                "(serve the folder, e.g. `python3 -m http.server -d reports/allure-report`)")


# --- real cluster targets (issue 5) -----------------------------------------------------------

LIVE_TESTS = str(Path("tests", "container", "test_live_kind_k3d.py"))
MIRROR_LIVE_TESTS = str(Path("tests", "container", "test_live_kind_mirror.py"))
FAULT_MATRIX = str(Path("tests", "integration", "test_fault_matrix.py"))
FLUX_ONLY = ("--only", "source-controller", "kustomize-controller", "kustomize")
KIND_TOOLS = ("kind", "kubelet", "kubeadm", "kube-proxy", "kubectl", "crictl", "coredns",
              "local-path-provisioner", "etcd", "kube-apiserver", "kube-controller-manager",
              "kube-scheduler", "helm-controller", "registry")
"""harness.tools.KIND_TOOLS plus helm-controller (the HelmRelease drill) and the registry
mirror: built only here."""


@nox.session(name="drill-kind", default=False)
def drill_kind(session: nox.Session) -> None:
    """Full drills on real kind clusters: drdrill's node image, built offline, 2 nodes."""
    _install(session)
    session.run("drdrill", "tools", "ensure", *FLUX_ONLY, *KIND_TOOLS)
    session.run("drdrill", "kind-image", "build")
    # ... and the fault matrix's kind row (^C during a real `kind create cluster`).
    session.run("pytest", "-m", "kind", "-rs", LIVE_TESTS, MIRROR_LIVE_TESTS, FAULT_MATRIX,
                *session.posargs)


@nox.session(name="drill-k3d", default=False)
def drill_k3d(session: nox.Session) -> None:
    """Full drills on real k3d clusters (k3d, Docker, pullable or preloaded images)."""
    _install(session)
    session.run("drdrill", "tools", "ensure", *FLUX_ONLY)
    session.run("pytest", "-m", "k3d", "-rs", LIVE_TESTS, *session.posargs)


@nox.session(name="drill-hardware", default=False)
def drill_hardware(session: nox.Session) -> None:
    """The lab drill on an inventory's hosts: `nox -s drill-hardware -- INVENTORY [drill args]`."""
    args = list(session.posargs)
    given = args.pop(0) if args and not args[0].startswith("-") else \
        os.environ.get("DRDRILL_INVENTORY")
    if not given:
        session.error("drill-hardware needs the inventory of the lab hosts it may use: "
                      "`nox -s drill-hardware -- lab.yaml [drill args]` or DRDRILL_INVENTORY="
                      "lab.yaml. It never touches a host that is not in the inventory.")
    inventory = Path(given).resolve()
    if not inventory.is_file():
        session.error(f"the inventory {inventory} does not exist")
    _install(session)
    # A typo in the inventory fails here in milliseconds, naming file, host and field.
    session.run("python", "-c", "import sys; from harness.inventory import load_inventory; "
                "inv = load_inventory(sys.argv[1]); print(f'inventory {inv.path}: "
                "{inv.distribution} on', ', '.join(h.name for h in inv.hosts), '; spare:', "
                "', '.join(h.name for h in inv.spare) or 'none')", str(inventory))
    session.run("drdrill", "tools", "ensure")
    drill_args = args or ["--inputs", str(Path("scenarios", "inputs", "homelab"))]
    # The inventory reaches the lab provider through DRDRILL_INVENTORY, which is also the
    # default of `drdrill drill --inventory`.
    session.run("drdrill", "drill", "--provider", "lab", *drill_args,
                env={"PYTHONUNBUFFERED": "1", "DRDRILL_INVENTORY": str(inventory)})
