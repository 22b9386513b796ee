"""Counters the usage app keeps as it works: records ingested, calls through the proxy, and the
latency the proxy adds. They are prometheus_client metrics in multiprocess mode (settings set
PROMETHEUS_MULTIPROC_DIR), so every web and worker process writes its own file and `/metrics`
sums them. What the database already knows (usage, balances, budgets) is read at scrape time
instead (`billing.metrics`)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram

INGESTED = Counter("toki_ingested_records", "Usage records stored, by the path they came through", ["source"])
PROXY_REQUESTS = Counter(
    "toki_proxy_requests", "Calls the logging proxy recorded, by the status class answered", ["status_class"]
)
PROXY_BUDGET_REFUSALS = Counter(
    "toki_proxy_budget_refusals", "Calls the proxy refused because an enforced budget was exhausted"
)
PROXY_ADDED_LATENCY = Histogram(
    "toki_proxy_added_latency_seconds",
    "Time from a call's arrival at the proxy to its request going upstream (routing, checks, body)",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0),
)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def record_ingested(source: str, count: int) -> None:
    INGESTED.labels(source=source or "unknown").inc(count)


def record_proxy_call(status: int) -> None:
    PROXY_REQUESTS.labels(status_class=status_class(status)).inc()


def record_forwarding(started: float) -> None:
    """`started` is the perf_counter() of the call's arrival."""
    PROXY_ADDED_LATENCY.observe(time.perf_counter() - started)


def on_usage_recorded(sender: Any, inserted: int = 0, source: str = "", **kwargs: Any) -> None:
    record_ingested(source, inserted)
