"""The usage half of the demo data set (`manage.py seed_demo`, README "Two commands").

Demo users, the "Acme AI" account, a price book, a dozen keys in four teams, and
N days of requests sent through `record_usage`, so rollups are kept by the real
ingestion path.

Deterministic: an hour's requests come from an RNG seeded with (seed, hour), and
growth and incidents are placed relative to the window, so the same seed and the
same `until` give exactly the same records.
Idempotent: request ids are derived from seed and hour; hours that already hold
this seed's records are not generated again; each batch holds whole hours (one
transaction), so a run that stopped half-way resumes where it stopped, and a run
a few hours later only adds those hours.

The package: `catalogue` (models, texts, rhythms, keys), `failures` (incidents and the
background error rate), `traffic` (the window and one hour's records) and `writing` (users,
account, prices, keys and records through `record_usage`).
"""

from __future__ import annotations

from usage.demo.catalogue import (
    BACKGROUND_ERROR_RATE,
    DEMO_PASSWORD,
    GROWTH_OVER_WINDOW,
    HOUR,
    KEYS,
    MAX_DAYS,
    MODELS,
    PARAMETERS,
    PRICES_EFFECTIVE_FROM,
    PROFILE_CLASSES,
    REJECTED_PARAMETERS,
    RHYTHMS,
    TEXTS,
    KeySpec,
    ModelSpec,
    Rhythm,
    TextKind,
)
from usage.demo.failures import (
    BACKGROUND_FAILURES,
    BAD_GATEWAY,
    CANCELLED,
    INCIDENTS,
    INVALID_KEY,
    KEY_DISABLED,
    MODEL_NOT_FOUND,
    OVERLOADED,
    QUOTA_402,
    QUOTA_429,
    RATE_LIMITED,
    SERVER_ERROR,
    TIMED_OUT,
    UNSUPPORTED_PARAMETER,
    Failure,
    Incident,
)
from usage.demo.traffic import DemoWindow, Tokens, current_hour, records_for_hour, records_in_window
from usage.demo.writing import (
    DemoReport,
    ensure_account,
    ensure_prices,
    ensure_users,
    ingest_window,
    label_key_teams,
    seed_demo_usage,
    seeded_hours,
)

__all__ = [
    "BACKGROUND_ERROR_RATE",
    "BACKGROUND_FAILURES",
    "BAD_GATEWAY",
    "CANCELLED",
    "DEMO_PASSWORD",
    "GROWTH_OVER_WINDOW",
    "HOUR",
    "INCIDENTS",
    "INVALID_KEY",
    "KEYS",
    "KEY_DISABLED",
    "MAX_DAYS",
    "MODELS",
    "MODEL_NOT_FOUND",
    "OVERLOADED",
    "PARAMETERS",
    "PRICES_EFFECTIVE_FROM",
    "PROFILE_CLASSES",
    "QUOTA_402",
    "QUOTA_429",
    "RATE_LIMITED",
    "REJECTED_PARAMETERS",
    "RHYTHMS",
    "SERVER_ERROR",
    "TEXTS",
    "TIMED_OUT",
    "UNSUPPORTED_PARAMETER",
    "DemoReport",
    "DemoWindow",
    "Failure",
    "Incident",
    "KeySpec",
    "ModelSpec",
    "Rhythm",
    "TextKind",
    "Tokens",
    "current_hour",
    "ensure_account",
    "ensure_prices",
    "ensure_users",
    "ingest_window",
    "label_key_teams",
    "records_for_hour",
    "records_in_window",
    "seed_demo_usage",
    "seeded_hours",
]
