"""full-rebuild: build the cluster from Git, lose it, rebuild it from Git; the rebuild's
time-to-ready is the figure."""

from __future__ import annotations

from harness.core.scenario import BUILD, Scenario, phases
from harness.scenarios._common import lose_cluster, ttr_figure

SCENARIO = Scenario(
    name="full-rebuild",
    summary="delete the cluster, rebuild it from Git; time-to-ready of the rebuild",
    description="Build the cluster from Git, delete it (the disaster), rebuild it from Git, and "
                "measure time-to-ready and manual steps of the rebuild.",
    phases=phases((*BUILD, "disaster"), ("provision", "bootstrap", "converge", "verify")),
    figure="time-to-rebuild",
    disaster=lose_cluster,
    figures=ttr_figure("time_to_rebuild_s", "time-to-rebuild",
                       "Rebuild start (provision) until every Flux object is ready at the "
                       "revision and every workload is rolled out."),
)
