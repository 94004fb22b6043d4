"""``/metrics``: the host's status, as the host loop answered it, in Prometheus's text format.

The series' names are a contract (the README lists them): dashboards and alerts are built on
them. Each scrape builds a registry of its own around one ``Snapshot`` collector of that
answer, so nothing here reads the host's live records or keeps state between scrapes; the
counters live on the records (``records.Worker``), counted by core, and survive its reload.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hotreload.states import RUNNING, STATES

__all__ = ["CONTENT_TYPE", "RELOAD_RESULTS", "Snapshot", "exposition"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
RELOAD_RESULTS = ("ok", "failed")


class Snapshot(Collector):
    """The metrics of one status answer (``core._status``): the workers', and the host
    process's memory and threads, which the loop read from the kernel as it answered."""

    def __init__(self, status: Mapping[str, Any]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        worker = ["worker"]
        up = GaugeMetricFamily("hotreload_worker_up", "1 when the worker is running, else 0", labels=worker)
        state = GaugeMetricFamily("hotreload_worker_state", "1 for the state the worker is in, 0 for the others",
                                  labels=[*worker, "state"])
        restarts = CounterMetricFamily("hotreload_worker_restarts", "Restarts of the worker: after a crash, "
                                       "on request, for a watched file", labels=worker)
        crashes = CounterMetricFamily("hotreload_worker_crashes", "Runs of the worker that raised or hung",
                                      labels=worker)
        reloads = CounterMetricFamily("hotreload_worker_reloads", "Swaps of the worker's code, by result",
                                      labels=[*worker, "result"])
        cpu = CounterMetricFamily("hotreload_worker_cpu_seconds", "CPU time of the worker's threads, and of the "
                                  "threads they started", labels=worker)
        durations = HistogramMetricFamily("hotreload_reload_duration_seconds",
                                          "From a change reaching the host to the worker's new code running", labels=worker)
        for row in self.status["workers"]:
            name = [row["name"]]
            up.add_metric(name, 1.0 if row["state"] == RUNNING else 0.0)
            for each in STATES:
                state.add_metric([*name, each], 1.0 if row["state"] == each else 0.0)
            restarts.add_metric(name, row["restarts"])
            crashes.add_metric(name, row["crashes"])
            for result in RELOAD_RESULTS:
                reloads.add_metric([*name, result], row["reloads"].get(result, 0))
            durations.add_metric(name, *buckets(row["reload_seconds"]))
            cpu.add_metric(name, row.get("cpu_seconds") or 0.0)
        yield from (up, state, restarts, crashes, reloads, cpu, durations)
        yield GaugeMetricFamily("hotreload_host_uptime_seconds", "Seconds since the host started",
                                value=self.status["uptime"])
        yield GaugeMetricFamily("hotreload_host_rss_bytes", "The host process's resident memory",
                                value=self.status["rss_bytes"])
        yield GaugeMetricFamily("hotreload_host_threads", "Threads of the host process", value=self.status["threads"])


def buckets(tally: Mapping[str, Any]) -> tuple[list[tuple[str, float]], float]:
    """A ``records.Durations`` (as status shows it) as cumulative buckets and their sum."""
    counts = tally["counts"] or [0] * (len(tally["bounds"]) + 1)
    cumulative, total = [], 0
    for bound, count in zip([*tally["bounds"], float("inf")], counts):
        total += count
        cumulative.append((floatToGoString(bound), float(total)))
    return cumulative, tally["total"]


def exposition(status: Mapping[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(status))
    return generate_latest(registry)
