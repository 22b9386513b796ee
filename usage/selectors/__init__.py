"""Reads for the usage pages and API, aggregated in the database (mostly from the rollups).

One package, a module per concern: `totals` (a period's totals and summaries, the base of every
money figure), `keys` (Keys & teams), `engineering` (models, latency, errors, retention notices)
and `progress` (repricing running). Callers import from `usage.selectors`."""

from __future__ import annotations

from usage.selectors.engineering import (
    DEFAULT_MODEL_SORT,
    MODEL_SORTS,
    CauseCount,
    CauseDay,
    Latency,
    ModelDayUsage,
    ModelRow,
    dimension_values,
    errors_by_cause,
    errors_per_day,
    model_latency,
    model_rows,
    model_totals,
    model_usage_per_day,
    raw_detail_notice,
    top_by_for_model,
)
from usage.selectors.keys import (
    NO_TEAM,
    KeyUsage,
    TeamUsage,
    budget_targets,
    team_names,
    usage_by_key,
    usage_by_team,
)
from usage.selectors.progress import RepricingProgress, repricing_progress
from usage.selectors.totals import (
    SUMMARY_DIMENSIONS,
    TOTAL_FIELDS,
    ZERO,
    GroupTotals,
    ModelDay,
    SummaryRow,
    Totals,
    only_q,
    rollup_rows,
    spend_by_model_per_day,
    summary,
    top_by,
    totals,
    unpriced_models,
)

__all__ = [
    "DEFAULT_MODEL_SORT",
    "MODEL_SORTS",
    "NO_TEAM",
    "SUMMARY_DIMENSIONS",
    "TOTAL_FIELDS",
    "ZERO",
    "CauseCount",
    "CauseDay",
    "GroupTotals",
    "KeyUsage",
    "Latency",
    "ModelDay",
    "ModelDayUsage",
    "ModelRow",
    "RepricingProgress",
    "SummaryRow",
    "TeamUsage",
    "Totals",
    "budget_targets",
    "dimension_values",
    "errors_by_cause",
    "errors_per_day",
    "model_latency",
    "model_rows",
    "model_totals",
    "model_usage_per_day",
    "only_q",
    "raw_detail_notice",
    "repricing_progress",
    "rollup_rows",
    "spend_by_model_per_day",
    "summary",
    "team_names",
    "top_by",
    "top_by_for_model",
    "totals",
    "unpriced_models",
    "usage_by_key",
    "usage_by_team",
]
