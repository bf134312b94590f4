"""The benchmark behind `drdrill bench`: drdrill against `kubectl wait` and the flux CLI on the
same cluster, its detection latency, overhead, scaling and parallel drills (a table, never a
pass/fail test)."""
