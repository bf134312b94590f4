"""What bends the scaling curve: the run's components' Prometheus metrics sampled during a
converge (CPU per process, the controllers' workqueues, reconcile times and client-side
throttling, the apiserver's in-flight requests and latency, etcd's commits), and a CPU profile
of the busiest controllers through their pprof endpoint.

Targets are found from the run's own processes (/proc: DRDRILL_RUN_ID and the flags they run
with), so nothing is configured twice: a Flux controller's `--metrics-addr`, etcd's
`--listen-client-urls`, the apiserver through the kubeconfig.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.gc import run_processes

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

GAUGES = {"workqueue_depth": "name", "apiserver_current_inflight_requests": "request_kind"}
"""Gauges kept as their maximum, per the label named."""
COUNTERS = {
    "process_cpu_seconds_total": None,
    "controller_runtime_reconcile_total": "controller",
    "controller_runtime_reconcile_time_seconds_sum": "controller",
    "controller_runtime_reconcile_time_seconds_count": "controller",
    "workqueue_queue_duration_seconds_sum": "name",
    "workqueue_queue_duration_seconds_count": "name",
    "rest_client_rate_limiter_duration_seconds_sum": None,
    "rest_client_rate_limiter_duration_seconds_count": None,
    "rest_client_requests_total": None,
    "apiserver_request_duration_seconds_sum": "verb",
    "apiserver_request_duration_seconds_count": "verb",
    "apiserver_request_terminations_total": None,
    "etcd_disk_backend_commit_duration_seconds_sum": None,
    "etcd_disk_backend_commit_duration_seconds_count": None,
    "etcd_server_proposals_committed_total": None,
}
"""Counters kept as their increase over the window, summed per the label named (None: all)."""


def parse(text: str) -> dict[tuple[str, str], float]:
    """(metric, label value) -> value for the metrics above, from Prometheus text format."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, labels, raw = m.groups()
        if name in GAUGES:
            key_label: str | None = GAUGES[name]
        elif name in COUNTERS:
            key_label = COUNTERS[name]
        else:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        lv = dict(_LABEL.findall(labels or "")).get(key_label, "") if key_label else ""
        out[(name, lv)] = out.get((name, lv), 0.0) + value
    return out


def targets(run_id: str) -> dict[str, str]:
    """Component name -> its plain-HTTP metrics URL, from the run's processes' flags."""
    out: dict[str, str] = {}
    for pid in run_processes()[0].get(run_id, []):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if not args:
            continue
        name = Path(args[0]).name
        for a in args[1:]:
            if a.startswith("--metrics-addr="):
                out[name] = f"http://{a.split('=', 1)[1]}/metrics"
            elif a.startswith("--listen-client-urls=") and name == "etcd":
                url = a.split("=", 1)[1].split(",")[0]
                if url.startswith("http://"):
                    out[name] = f"{url}/metrics"
    return out


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return str(resp.read().decode(errors="replace"))


class Sampler(threading.Thread):
    """Samples every target each `interval_s` until stopped; `summary()` after."""

    def __init__(self, run_id: str, api: Any = None, interval_s: float = 2.0) -> None:
        super().__init__(daemon=True, name="metrics-sampler")
        self.run_id, self.api, self.interval_s = run_id, api, interval_s
        self.first: dict[str, dict[tuple[str, str], float]] = {}
        self.last: dict[str, dict[tuple[str, str], float]] = {}
        self.peak: dict[str, dict[tuple[str, str], float]] = {}
        self.samples = 0
        self.errors: dict[str, str] = {}
        self._stop_event = threading.Event()
        self.window: tuple[float, float] | None = None
        self.cpu_s = 0.0
        """CPU seconds this thread used: the harness's own CPU figure leaves it out."""

    def _scrape(self) -> dict[str, str]:
        texts: dict[str, str] = {}
        for name, url in targets(self.run_id).items():
            try:
                texts[name] = _get(url)
            except OSError as exc:
                self.errors[name] = str(exc)
        if self.api is not None:
            try:
                # kubernetes-client 37: call_api(method, url) -> RESTResponse
                resp = self.api.call_api("GET", f"{self.api.configuration.host}/metrics",
                                         _request_timeout=5)
                resp.read()
                texts["kube-apiserver"] = resp.data.decode(errors="replace")
            except Exception as exc:  # noqa: BLE001 - a missed sample is recorded, not fatal
                self.errors["kube-apiserver"] = str(exc)[:200]
        return texts

    def sample(self) -> None:
        for name, text in self._scrape().items():
            values = parse(text)
            self.first.setdefault(name, values)
            self.last[name] = values
            peak = self.peak.setdefault(name, {})
            for key, v in values.items():
                if key[0] in GAUGES:
                    peak[key] = max(peak.get(key, v), v)
        self.samples += 1

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop_event.is_set():
            with contextlib.suppress(Exception):  # the cluster may be going away
                self.sample()
            self._stop_event.wait(self.interval_s)
            self.cpu_s = time.thread_time()
        self.window = (start, time.monotonic())

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        return summarize(self.first, self.last, self.peak) | {
            "samples": self.samples, "window_s": None if self.window is None else
            round(self.window[1] - self.window[0], 1), "errors": self.errors}


def _delta(first: Mapping[tuple[str, str], float], last: Mapping[tuple[str, str], float],
           metric: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (name, label), v in last.items():
        if name == metric:
            out[label] = v - first.get((name, label), 0.0)
    return out


def _mean(sums: Mapping[str, float], counts: Mapping[str, float]) -> dict[str, float]:
    return {k: round(sums.get(k, 0.0) / c, 4) for k, c in counts.items() if c > 0}


def summarize(first: Mapping[str, Mapping[tuple[str, str], float]],
              last: Mapping[str, Mapping[tuple[str, str], float]],
              peak: Mapping[str, Mapping[tuple[str, str], float]]) -> dict[str, Any]:
    """Per component: CPU seconds used in the window, and what its metrics say about queues,
    latency and throttling (only what it exports)."""
    out: dict[str, Any] = {}
    for name in sorted(last):
        f, lst = first.get(name, {}), last[name]
        row: dict[str, Any] = {}
        cpu = _delta(f, lst, "process_cpu_seconds_total").get("")
        if cpu is not None:
            row["cpu_s"] = round(cpu, 2)
        depth = {label: v for (m, label), v in (peak.get(name) or {}).items()
                 if m == "workqueue_depth"}
        if depth:
            row["workqueue_depth_max"] = depth
        reconciles = _delta(f, lst, "controller_runtime_reconcile_time_seconds_count")
        if reconciles:
            row["reconciles"] = {k: int(v) for k, v in reconciles.items()}
            row["reconcile_mean_s"] = _mean(
                _delta(f, lst, "controller_runtime_reconcile_time_seconds_sum"), reconciles)
            row["queue_wait_mean_s"] = _mean(
                _delta(f, lst, "workqueue_queue_duration_seconds_sum"),
                _delta(f, lst, "workqueue_queue_duration_seconds_count"))
        throttled = _delta(f, lst, "rest_client_rate_limiter_duration_seconds_sum").get("")
        if throttled is not None:
            row["client_throttle_s"] = round(throttled, 2)
            row["client_requests"] = int(_delta(f, lst, "rest_client_requests_total")
                                         .get("", 0.0))
        inflight = {label: v for (m, label), v in (peak.get(name) or {}).items()
                    if m == "apiserver_current_inflight_requests"}
        if inflight:
            row["inflight_max"] = inflight
            verbs = _delta(f, lst, "apiserver_request_duration_seconds_count")
            row["requests"] = {k: int(v) for k, v in verbs.items() if v}
            row["request_mean_ms"] = {k: round(v * 1000, 1) for k, v in _mean(
                _delta(f, lst, "apiserver_request_duration_seconds_sum"), verbs).items()}
            row["terminated"] = int(sum(_delta(f, lst, "apiserver_request_terminations_total")
                                        .values()))
        commits = _delta(f, lst, "etcd_disk_backend_commit_duration_seconds_count").get("")
        if commits:
            row["backend_commits"] = int(commits)
            row["backend_commit_mean_ms"] = round(1000 * _delta(
                f, lst, "etcd_disk_backend_commit_duration_seconds_sum").get("", 0.0) / commits, 2)
        out[name] = row
    return out


def cpu_profile(run_id: str, names: Iterable[str], seconds: int, dest: Path) -> dict[str, str]:
    """A `seconds`-long CPU profile of each named controller from its pprof endpoint (served
    on the metrics address); name -> the saved file, or the error."""
    found = targets(run_id)
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    threads = []

    def grab(name: str, url: str) -> None:
        try:
            data = urllib.request.urlopen(  # noqa: S310 - loopback only
                f"{url.rsplit('/', 1)[0]}/debug/pprof/profile?seconds={seconds}",
                timeout=seconds + 30).read()
            (dest / f"{name}.pprof").write_bytes(data)
            out[name] = str(dest / f"{name}.pprof")
        except OSError as exc:
            out[name] = f"error: {exc}"

    for name in names:
        if name in found:
            t = threading.Thread(target=grab, args=(name, found[name]), daemon=True)
            t.start()
            threads.append(t)
    for t in threads:
        t.join(timeout=seconds + 40)
    return out


def top(profile: Path, nodes: int = 12) -> str:
    """`go tool pprof -top` of a saved profile (Go's profiles carry their symbols)."""
    from harness.command import Command, run
    from harness.errors import CommandError

    try:  # the first use builds pprof itself: minutes on a busy machine
        res = run(Command.of("go", "tool", "pprof", "-top", f"-nodecount={nodes}",
                             str(profile)).with_timeout(300), check=False)
    except CommandError as exc:
        return f"error: {exc}"
    return res.stdout if res.returncode == 0 else f"error: {res.stderr.strip()[-300:]}"
