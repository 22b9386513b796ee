"""Correcting stored records when the rule that valued them changes.

Failed calls used to be billed: a call that failed without reporting usage (a 401, a
429, an unreachable upstream, a timeout, a cancelled call…) got tokens estimated from its
prompt's size and a cost like a served one, and a failed call on an unpriced model read
as unpriced. Ingestion now gives such a call no tokens and a cost of zero
(`usage.pricing.price_book.valuation`); `zero_failed_calls` gives the stored ones the same, keeps
their logged lengths, and moves both rollups by exactly the difference.

The model classes come from an app registry, so the data migration (historical models)
and `manage.py correct_failed_calls` share this code. It must only use fields that exist
at migration usage 0011.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.apps import apps as installed_apps
from django.apps.registry import Apps
from django.db import transaction
from django.db.models import Q

from usage import rollups
from usage.pricing.repricing import rollup_row
from usage.sql import upsert_adding

CHUNK_SIZE = 2000
ZEROED_FIELDS = [
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "tokens_source",
    "estimator_version",
    "cost",
    "cost_source",
    "price",
]


@dataclass
class FailedCallCorrection:
    """What the correction changed in one account."""

    slug: str
    currency: str
    records: int = 0
    tokens: int = 0  # prompt + completion tokens no longer counted
    usage_value: Decimal = Decimal(0)  # cost no longer counted, in the account's currency
    unpriced: int = 0  # records that read as unpriced and now cost zero
    since: datetime | None = None  # the earliest corrected record

    def describe(self) -> str:
        return (
            f"{self.slug}: {self.records:,} failed calls no longer billed: {self.tokens:,} tokens and "
            f"{self.usage_value:,.2f} {self.currency} of usage value removed, {self.unpriced:,} no longer unpriced"
            + (f", from {self.since:%Y-%m-%d %H:%M} UTC" if self.since else "")
        )


def billed_failures() -> Q:
    """Failed calls (an error cause) without reported usage that still count tokens or money."""
    unreported = Q(tokens_source__in=["estimated", "none"])
    counted = Q(tokens_source="estimated") | Q(cost__isnull=True) | ~Q(cost=0) | Q(prompt_tokens__gt=0)
    return ~Q(error_cause="none") & unreported & counted


def zero_failed_calls(
    apps: Apps = installed_apps, *, account_ids: Iterable[int] | None = None, chunk_size: int = CHUNK_SIZE
) -> list[FailedCallCorrection]:
    """Correct every account (or those of `account_ids`); one correction per account changed."""
    account_model = apps.get_model("usage", "Account")
    record_model = apps.get_model("usage", "UsageRecord")
    accounts = account_model.objects.order_by("pk")
    if account_ids is not None:
        accounts = accounts.filter(pk__in=list(account_ids))
    done = []
    for account in accounts:
        records = record_model.objects.filter(account_id=account.pk).filter(billed_failures())
        ids = list(records.order_by("pk").values_list("pk", flat=True))
        if not ids:
            continue
        correction = FailedCallCorrection(account.slug, account.currency)
        for start in range(0, len(ids), chunk_size):
            with transaction.atomic():
                chunk = list(records.filter(pk__in=ids[start : start + chunk_size]).select_for_update())
                _zero(apps, chunk, correction)
        done.append(correction)
    return done


def _zero(apps: Apps, records: list[Any], correction: FailedCallCorrection) -> None:
    before = [rollup_row(record) for record in records]
    for record in records:
        correction.records += 1
        correction.tokens += record.prompt_tokens + record.completion_tokens
        correction.usage_value += record.cost or Decimal(0)
        correction.unpriced += record.cost is None
        if correction.since is None or record.occurred_at < correction.since:
            correction.since = record.occurred_at
        record.prompt_tokens = record.completion_tokens = record.cached_tokens = record.reasoning_tokens = 0
        record.tokens_source, record.estimator_version = "none", ""
        record.cost, record.cost_source, record.price_id = Decimal(0), "computed", None
    apps.get_model("usage", "UsageRecord").objects.bulk_update(records, ZEROED_FIELDS, batch_size=500)
    after = [rollup_row(record) for record in records]
    for rollup in rollups.ROLLUPS:
        model = apps.get_model("usage", rollup.model.__name__)
        counters = [name for name in rollup.model.COUNTERS if _has_field(model, name)]
        deltas = rollups.deltas_for(before, sign=-1, rollup=rollup) + rollups.deltas_for(after, rollup=rollup)
        # One row per group: an upsert may not touch a row twice in one statement.
        merged: dict[tuple, dict[str, Any]] = {}
        for delta in deltas:
            group = tuple(delta[name] for name in rollup.group)
            into = merged.setdefault(group, {name: delta[name] for name in rollup.group} | dict.fromkeys(counters, 0))
            for name in counters:
                into[name] += delta[name]
        upsert_adding(model, list(merged.values()), conflict_sql=rollup.conflict_sql, counters=counters)


def _has_field(model: Any, name: str) -> bool:
    return any(field.name == name for field in model._meta.get_fields())
