"""Metrics kept in Redis, so every worker process adds to the same numbers and `/metrics` (served by
`podci serve`) reads them at scrape time. Step durations are taken from the build record when the
build completes, so the metrics, the build pages and Flower agree.

Keys: `store.keys.counter`, `histogram` and `histogram_labels`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from redis import Redis

from schemas.record import BuildRecord
from store import keys
from store.connection import as_text

BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
QUEUES = ("podci.notify", "podci.steps", "podci.new")

COUNTERS = {
    "builds": ("Builds finished, by final state", "state"),
    "pod_launches": ("Pods launched, relaunches included", "backend"),
    "pod_losses": ("Pods lost (evicted, deleted, node gone) and relaunched", "backend"),
    "reporter_failures": ("Status posts that failed (each retry counts)", "reporter"),
}
HISTOGRAMS = {
    "step_duration_seconds": ("Time each pipeline step took, from the build record", "step"),
    "webhook_to_inprogress_seconds": ("From webhook received to INPROGRESS posted", "reporter"),
}


def count(redis: Redis, name: str, label: str, amount: int = 1) -> None:
    redis.hincrby(keys.counter(name), label, amount)


def observe(redis: Redis, name: str, label: str, value: float) -> None:
    index = next((i for i, bound in enumerate(BUCKETS) if value <= bound), len(BUCKETS))
    key = keys.histogram(name, label)
    with redis.pipeline(transaction=False) as pipe:
        pipe.sadd(keys.histogram_labels(name), label)
        pipe.hincrby(key, str(index), 1)
        pipe.hincrbyfloat(key, "sum", value)
        pipe.hincrby(key, "count", 1)
        pipe.execute()


def record_completion(redis: Redis, record: BuildRecord, backend: str) -> None:
    """Called once per build, by the worker that completed it."""
    count(redis, "builds", record.state.value)
    if record.attempts:
        count(redis, "pod_launches", backend, record.attempts)
    for step in record.steps:
        if step.started is not None and step.finished is not None:
            observe(redis, "step_duration_seconds", step.name, (step.finished - step.started).total_seconds())


class RedisCollector:
    """A prometheus_client collector that reads the numbers above at every scrape."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def describe(self) -> Iterator[Metric]:
        """The families without their samples, so that registering this collector asks Redis nothing
        (a server must start while Redis is down, and say so on /healthz)."""
        for name, (doc, label) in COUNTERS.items():
            yield CounterMetricFamily(f"podci_{name}", doc, labels=[label])
        for name, (doc, label) in HISTOGRAMS.items():
            yield HistogramMetricFamily(f"podci_{name}", doc, labels=[label])
        yield GaugeMetricFamily("podci_queue_depth", "Messages waiting in each queue", labels=["queue"])

    def collect(self) -> Iterator[Metric]:
        for name, (doc, label) in COUNTERS.items():
            counter = CounterMetricFamily(f"podci_{name}", doc, labels=[label])
            for key, value in self.redis.hgetall(keys.counter(name)).items():
                counter.add_metric([as_text(key)], int(value))
            yield counter
        for name, (doc, label) in HISTOGRAMS.items():
            yield self._histogram(name, doc, label)
        depth = GaugeMetricFamily("podci_queue_depth", "Messages waiting in each queue", labels=["queue"])
        for queue in QUEUES:
            depth.add_metric([queue], int(self.redis.llen(queue)))
        yield depth

    def _histogram(self, name: str, doc: str, label: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(f"podci_{name}", doc, labels=[label])
        for member in sorted(as_text(m) for m in self.redis.smembers(keys.histogram_labels(name))):
            data = {as_text(k): float(v) for k, v in self.redis.hgetall(keys.histogram(name, member)).items()}
            running, buckets = 0.0, []
            for index, bound in enumerate((*BUCKETS, float("inf"))):
                running += data.get(str(index), 0.0)
                buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
            family.add_metric([member], buckets, data.get("sum", 0.0))
        return family
