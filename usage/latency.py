"""Latency buckets: how the histogram beside the rollups (`usage.models.LatencyHistogram`)
files a request's latency, and how percentiles are read back from it.

A month of one busy model is hundreds of thousands of records; sorting their latencies for
a p95 took more than a second at 10 million records (bench/README.md, "10 million
records"). The histogram holds at most a few hundred buckets per model and day instead.

Below `EXACT_BELOW_MS` a bucket is one millisecond, so percentiles there are exact. Above,
each bucket is at most 2% wide and is read as its midpoint, so a percentile read from the
histogram is within 1% of the one the records give (the relative-accuracy idea of the
DDSketch quantile sketch). Bounds are whole milliseconds computed once by integer
arithmetic, so the ingestion path and a rebuild file every latency in the same bucket.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable

EXACT_BELOW_MS = 100
RELATIVE_ACCURACY = 0.01  # what the pages say: percentiles within 1%
LARGEST_MS = 2**31 - 1  # the latency column is a 32-bit integer


def _bounds() -> list[int]:
    """Lower bound (inclusive, ms) of each bucket from EXACT_BELOW_MS on, and one past the last."""
    bounds = [EXACT_BELOW_MS]
    while bounds[-1] <= LARGEST_MS:
        low = bounds[-1]
        bounds.append(low + max(1, math.floor(low * 2 * RELATIVE_ACCURACY)))
    return bounds


_BOUNDS = _bounds()


def bucket_of(latency_ms: int) -> int:
    if latency_ms < EXACT_BELOW_MS:
        return max(latency_ms, 0)
    return EXACT_BELOW_MS + bisect_right(_BOUNDS, latency_ms) - 1


def value_of(bucket: int) -> int:
    """The latency a bucket stands for: itself below EXACT_BELOW_MS, else its midpoint."""
    if bucket < EXACT_BELOW_MS:
        return bucket
    index = bucket - EXACT_BELOW_MS
    low, high = _BOUNDS[index], _BOUNDS[index + 1] - 1
    return (low + high) // 2


def percentile(counts: Iterable[tuple[int, int]], fraction: float) -> int | None:
    """Nearest-rank percentile (like PostgreSQL's percentile_disc) of (bucket, requests) pairs
    in bucket order; None when there are no requests."""
    pairs = [(bucket, requests) for bucket, requests in counts if requests]
    total = sum(requests for _, requests in pairs)
    if not total:
        return None
    rank = max(math.ceil(fraction * total), 1)
    seen = 0
    for bucket, requests in pairs:
        seen += requests
        if seen >= rank:
            return value_of(bucket)
    raise AssertionError("unreachable: the ranks add up to the total")


def bucket_sql(column: str) -> tuple[str, dict[str, object]]:
    """`bucket_of` as a PostgreSQL expression of an integer column, with its named parameters:
    width_bucket counts the lower bounds at or below the value, as bisect_right does."""
    return (
        f"CASE WHEN {column} < %(exact_below)s THEN GREATEST({column}, 0) "
        f"ELSE %(exact_below)s + width_bucket({column}::bigint, %(bucket_bounds)s::bigint[]) - 1 END",
        {"exact_below": EXACT_BELOW_MS, "bucket_bounds": _BOUNDS},
    )
