"""Prometheus metrics, written out by hand in the text exposition format (version 0.0.4).

Why not `prometheus_client`: its registry is process-global, and every test (and every embedded
server) builds its own app; about a hundred lines of counters, histograms and scrape-time gauges
give each app its own registry with no dependency and no global state.

Three kinds of figures:

* counters and histograms updated on the request path (appends, reads, subscriptions);
* gauges computed at scrape time by collectors (log head, projection and group lag, parked
  events), so nothing polls the database between scrapes;
* labels are few and bounded (route templates, never raw paths or stream names).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Final

APPEND_OUTCOMES: Final = ("ok", "conflict", "rejected", "rolled_back")

Labels = tuple[str, ...]
Sample = tuple[str, dict[str, str], float]
"""(metric name with any suffix, labels, value): one line of the exposition."""

DEFAULT_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _line(name: str, labels: dict[str, str], value: float) -> str:
    if labels:
        inner = ",".join(f'{key}="{_escape(item)}"' for key, item in labels.items())
        return f"{name}{{{inner}}} {_format_value(value)}"
    return f"{name} {_format_value(value)}"


class _Metric:
    kind: str = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> Labels:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(labels)

    def samples(self) -> list[Sample]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[Labels, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def declare(self, *labels: str) -> None:
        """Publish this label set at 0 before anything happens (a rate over a missing series is no rate)."""
        key = self._key(labels)
        with self._lock:
            self._values.setdefault(key, 0.0)

    def samples(self) -> list[Sample]:
        with self._lock:
            items = sorted(self._values.items())
        return [(self.name, dict(zip(self.labelnames, key, strict=True)), value) for key, value in items]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
            counts[index] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, *labels: str) -> int:
        return sum(self._counts.get(self._key(labels), ()))

    def samples(self) -> list[Sample]:
        out: list[Sample] = []
        with self._lock:
            items = sorted((key, list(counts), self._sums[key]) for key, counts in self._counts.items())
        for key, counts, total in items:
            labels = dict(zip(self.labelnames, key, strict=True))
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                out.append((f"{self.name}_bucket", {**labels, "le": _format_value(bound)}, running))
            out.append((f"{self.name}_sum", labels, total))
            out.append((f"{self.name}_count", labels, running))
        return out


class Gauge(_Metric):
    """A value set directly (`set`/`inc`/`dec`) or, for collectors, reported at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[Labels, float] = {}

    def set(self, value: float, *labels: str) -> None:
        with self._lock:
            self._values[self._key(labels)] = value

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)

    def value(self, *labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[Sample]:
        with self._lock:
            items = sorted(self._values.items())
        return [(self.name, dict(zip(self.labelnames, key, strict=True)), value) for key, value in items]


Collector = Callable[[], None]
"""Called at every scrape, before rendering: sets the scrape-time gauges it owns."""


class Registry:
    """One app's metrics, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []
        self._collectors: list[Collector] = []

    def register(self, metric: _Metric) -> None:
        self._metrics.append(metric)

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help_text, labelnames)
        self.register(metric)
        return metric

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, help_text, labelnames)
        self.register(metric)
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = Histogram(name, help_text, labelnames, buckets)
        self.register(metric)
        return metric

    def add_collector(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def render(self) -> str:
        for collector in self._collectors:
            collector()
        lines: list[str] = []
        for metric in self._metrics:
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(_line(name, labels, value) for name, labels, value in metric.samples())
        return "\n".join(lines) + "\n"


class ServerMetrics:
    """The figures the server publishes; one instance per app."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.http_requests = r.counter(
            "chronik_http_requests_total",
            "HTTP requests by route template, method and status.",
            ("method", "route", "status"),
        )
        self.http_duration = r.histogram(
            "chronik_http_request_duration_seconds", "HTTP request latency by route template.", ("route",)
        )
        self.appends = r.counter(
            "chronik_appends_total",
            "Appends this server's process made (HTTP, application commands, demo workers), by outcome "
            "(ok, conflict, rejected, rolled_back).",
            ("outcome",),
        )
        self.appended_events = r.counter(
            "chronik_appended_events_total", "Events written by this server's process (committed appends)."
        )
        self.append_duration = r.histogram(
            "chronik_append_duration_seconds", "Time from an append's start to its commit (ok appends)."
        )
        self.reads = r.counter("chronik_reads_total", "Reads by kind (stream, log, state).", ("kind",))
        self.read_events = r.counter("chronik_read_events_total", "Events returned by reads.", ("kind",))
        self.subscriptions = r.gauge("chronik_subscriptions_active", "Open live subscriptions (SSE).")
        self.subscription_events = r.counter(
            "chronik_subscription_events_sent_total", "Events sent to live subscribers."
        )
        self.subscription_lag = r.gauge(
            "chronik_subscription_lag_events",
            "Largest lag of an open subscription: log head minus the last position it was sent.",
        )
        self.head = r.gauge("chronik_log_head_position", "The highest readable global position.")
        self.projection_position = r.gauge(
            "chronik_projection_position", "A projection's checkpoint (live tables).", ("projection",)
        )
        self.projection_lag = r.gauge(
            "chronik_projection_lag_events", "Log head minus a projection's checkpoint.", ("projection",)
        )
        self.projection_rebuilding = r.gauge(
            "chronik_projection_rebuilding", "1 while a projection rebuild is in progress.", ("projection",)
        )
        self.group_lag = r.gauge(
            "chronik_group_lag_events", "Events a consumer group has yet to handle.", ("group",)
        )
        self.group_parked = r.gauge(
            "chronik_group_parked_events", "Events a consumer group has parked.", ("group",)
        )
        self.group_members = r.gauge("chronik_group_members", "Live members of a consumer group.", ("group",))
        self.group_unowned = r.gauge(
            "chronik_group_unowned_partitions", "Partitions of a group with no owner.", ("group",)
        )
        self.group_assignments = r.gauge(
            "chronik_group_partition_assignments_total",
            "Partition ownership changes so far (the sum of the partitions' fencing epochs).",
            ("group",),
        )
        self.member_rebalances = r.counter(
            "chronik_group_member_rebalances_total",
            "Rebalance rounds of the group members this server runs (demo workers).",
            ("group",),
        )
        self.collector_errors = r.counter(
            "chronik_metrics_collector_errors_total", "Scrape-time collectors that failed.", ("collector",)
        )
        for outcome in APPEND_OUTCOMES:
            self.appends.declare(outcome)
        for kind in ("stream", "log", "state"):
            self.reads.declare(kind)
            self.read_events.declare(kind)
        self.appended_events.declare()
        self.subscription_events.declare()

    def add_collector(self, collector: Collector) -> None:
        self.registry.add_collector(collector)

    def observe_append(self, outcome: str, events: int, seconds: float) -> None:
        """The store's append observer (`EventStore.add_append_observer`): every append the process
        makes through the server's store is counted, not only those that came in over HTTP."""
        self.appends.inc(outcome)
        if outcome == "ok":
            self.appended_events.inc(amount=events)
            self.append_duration.observe(seconds)

    def render(self) -> str:
        return self.registry.render()


def parse_exposition(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for tests and the load script (not a full parser: our own output only)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        values[key] = float(value)
    return values


def label_values(samples: Iterable[Sample], name: str) -> list[dict[str, str]]:
    return [labels for metric, labels, _ in samples if metric == name]
