"""The garbage collector tuned for a long import (manage.py import_usage).

An import allocates hundreds of thousands of short-lived objects a second (records, rows),
which die young and hold no reference cycles. With Python's default thresholds the
collector runs a young-generation pass every 700 allocations and, every few of those, scans
everything the process loaded at start-up again. Freezing the start-up objects and passing
over the young generation every 50,000 allocations made an import about 8% faster
(bench/README.md, "Less Python per record"); cycles are still collected, a little later.

Only the start-up objects are frozen in the web processes (toki_dashboard/asgi.py). Raising
the thresholds there too changed nothing measurable in bench/ingest.py's API load once the
web processes pooled their connections (bench/README.md, "Pooled connections"). Before the
pool it ran PostgreSQL out of connections: each finished request's thread left its own to be
closed when the collector freed it, and passes that much rarer left hundreds open.
"""

from __future__ import annotations

import gc

YOUNG_GENERATION_THRESHOLD = 50_000
OLDER_GENERATION_THRESHOLD = 20


def tune_for_import() -> None:
    """Call once the process has loaded what it keeps (Django, the apps)."""
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, OLDER_GENERATION_THRESHOLD, OLDER_GENERATION_THRESHOLD)
