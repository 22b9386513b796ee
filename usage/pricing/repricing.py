"""Repricing: when a price or an exchange rate is added, changed or removed, the records
it affects get their cost recomputed in the background, and the rollups follow exactly.

A change is described by Scopes (account or every account of a currency, a model name
or glob, a time window; a price also reaches the accounts an exchange rate converts it
for). The Celery task `usage.tasks.reprice_records` turns them back into Scopes and
calls `reprice`, which walks the affected records in chunks keyed by id. Each chunk is
one transaction: lock the records, value them with the PriceBook as it is now, take
their old contribution out of the rollups and put the new one in. A provider-reported
cost is never replaced (unless the call was not served: see `usage.pricing.price_book.valuation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from toki_dashboard import background
from usage import rollups
from usage.models import Account, CostSource, ExchangeRate, HourlyUsage, ModelPrice, RepricingRun, UsageRecord
from usage.pricing.price_book import PriceBook, Valuation, valuation, was_served

CHUNK_SIZE = 2_000
# An ingestion batch prices its records with the book it loaded when it started and
# commits a moment later; waiting a little lets batches in flight during a price
# change commit before their records are repriced.
SETTLE_SECONDS = 5
# What pricing and the rollup read from a record; the JSON columns stay unloaded.
FIELDS = (
    "id",
    "account",
    "occurred_at",
    "model",
    "api_key",
    "team",
    "tokens_source",
    "status_code",
    "error_cause",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "latency_ms",
    "cost",
    "cost_source",
    "price",
    "exchange_rate",
)


@dataclass(frozen=True)
class Scope:
    """Records a price can apply to: its account (None: every account of the
    currency), its model name or glob, and the window [start, end)."""

    account_id: int | None
    currency: str
    model_pattern: str
    start: datetime
    end: datetime | None

    @classmethod
    def of(cls, price: ModelPrice) -> Scope:
        return cls(price.account_id, price.currency, price.model_pattern, price.effective_from, price.effective_to)

    @classmethod
    def of_rate(cls, rate: ExchangeRate, end: datetime | None) -> Scope:
        """Every model of the accounts kept in the rate's target currency, while it is in effect."""
        return cls(None, rate.to_currency, "*", rate.effective_from, end)

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.model_pattern for ch in "*?[")

    def covers(self, model: str) -> bool:
        return fnmatchcase(model, self.model_pattern) if self.is_pattern else model == self.model_pattern

    def applies_to(self, account: Account, pairs: frozenset[tuple[str, str]] = frozenset()) -> bool:
        """Whether the account can use a price of this scope: its own currency, or one an
        exchange rate (a (from, to) pair of `pairs`) converts into its currency."""
        convertible = self.currency == account.currency or (self.currency, account.currency) in pairs
        return convertible and self.account_id in (None, account.pk)

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "currency": self.currency,
            "pattern": self.model_pattern,
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scope:
        return cls(
            data["account"],
            data["currency"],
            data["pattern"],
            datetime.fromisoformat(data["start"]),
            datetime.fromisoformat(data["end"]) if data["end"] else None,
        )


Window = tuple[datetime, datetime | None]


def _hull(a: Window, b: Window) -> Window:
    end = None if a[1] is None or b[1] is None else max(a[1], b[1])
    return min(a[0], b[0]), end


def merged(scopes: Iterable[Scope]) -> list[Scope]:
    """One scope per (account, currency, pattern), over the hull of their windows:
    generous on purpose, the old and new windows of an edit may not even touch."""
    hulls: dict[tuple[int | None, str, str], Window] = {}
    for s in scopes:
        key = (s.account_id, s.currency, s.model_pattern)
        hulls[key] = _hull(hulls[key], (s.start, s.end)) if key in hulls else (s.start, s.end)
    return [Scope(a, c, p, start, end) for (a, c, p), (start, end) in hulls.items()]


def schedule(scopes: Iterable[Scope]) -> None:
    """Reprice these scopes in the background once the current transaction commits."""
    payload = [s.to_json() for s in merged(scopes)]
    if not payload:
        return
    # robust: the price is committed by then; a broker that is down must not turn the
    # save into an error. It is logged, and the next change to the price reprices again.
    transaction.on_commit(
        lambda: background.enqueue("usage.tasks.reprice_records", payload, countdown=SETTLE_SECONDS), robust=True
    )


def reprice(scopes: Sequence[Scope], *, chunk_size: int = CHUNK_SIZE) -> int:
    """Recompute the cost of every record these scopes cover; returns how many changed."""
    scopes = merged(scopes)
    if not scopes:
        return 0
    pairs = frozenset(ExchangeRate.objects.values_list("from_currency", "to_currency").distinct().order_by())
    shared = {s.currency for s in scopes if s.account_id is None}
    shared |= {target for source, target in pairs if source in shared}
    own = {s.account_id for s in scopes if s.account_id is not None}
    changed = 0
    for account in Account.objects.filter(Q(currency__in=shared) | Q(pk__in=own)).order_by("pk"):
        relevant = [s for s in scopes if s.applies_to(account, pairs)]
        groups = _record_groups(account, relevant)
        if groups:
            changed += _reprice_account(account, groups, chunk_size)
    return changed


def _record_groups(account: Account, scopes: Sequence[Scope]) -> list[QuerySet[UsageRecord]]:
    """Record querysets to walk: the account's models the scopes cover, grouped by window."""
    if not scopes:
        return []
    windows = iter((s.start, s.end) for s in scopes)
    lo, hi = next(windows)
    for window in windows:
        lo, hi = _hull((lo, hi), window)
    # The rollup knows which models an account used when, at a fraction of the records' size.
    in_use = HourlyUsage.objects.filter(account=account, hour__gte=_hour(lo))
    if hi is not None:
        in_use = in_use.filter(hour__lt=hi)
    exact: dict[str, list[Scope]] = {}
    patterns: list[Scope] = []
    for s in scopes:
        if s.is_pattern:
            patterns.append(s)
        else:
            exact.setdefault(s.model_pattern, []).append(s)
    per_model: dict[str, Window] = {}
    for model in in_use.values_list("model", flat=True).distinct().order_by():
        for s in exact.get(model, []) + [p for p in patterns if p.covers(model)]:
            window = (s.start, s.end)
            per_model[model] = _hull(per_model[model], window) if model in per_model else window
    by_window: dict[Window, list[str]] = {}
    for model, window in sorted(per_model.items()):
        by_window.setdefault(window, []).append(model)

    base = UsageRecord.objects.filter(account=account).exclude(cost_source=CostSource.REPORTED)
    groups = []
    for (start, end), models in by_window.items():
        records = base.filter(model__in=models, occurred_at__gte=start)
        groups.append(records.filter(occurred_at__lt=end) if end is not None else records)
    return groups


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _reprice_account(account: Account, groups: Sequence[QuerySet[UsageRecord]], chunk_size: int) -> int:
    total = sum(records.count() for records in groups)
    if not total:
        return 0
    run = RepricingRun.objects.create(account=account, total=total)
    changed = 0
    try:
        for records in groups:
            changed += _reprice_in_chunks(account, records, run, chunk_size)
    finally:
        now = timezone.now()
        RepricingRun.objects.filter(pk=run.pk).update(finished_at=now, updated_at=now)
    return changed


def _reprice_in_chunks(account: Account, records: QuerySet[UsageRecord], run: RepricingRun, chunk_size: int) -> int:
    changed, last_id = 0, 0
    while True:
        with transaction.atomic():
            chunk = list(records.filter(id__gt=last_id).order_by("id").only(*FIELDS).select_for_update()[:chunk_size])
            if not chunk:
                return changed
            # Loaded per chunk, under the locks: a price saved meanwhile is seen by the
            # chunks still to come, and its own job reprices the ones already done.
            done = reprice_chunk(chunk, PriceBook.for_account(account, {r.model for r in chunk}))
            RepricingRun.objects.filter(pk=run.pk).update(
                done=F("done") + len(chunk), changed=F("changed") + done, updated_at=timezone.now()
            )
        changed += done
        last_id = chunk[-1].pk


def reprice_chunk(records: Sequence[UsageRecord], book: PriceBook) -> int:
    """Price locked records with `book`, moving their rollup contribution; returns how many changed."""
    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    dirty: list[UsageRecord] = []
    for record in records:
        value = priced(record, book)
        if (record.cost, record.cost_source, record.price_id, record.exchange_rate_id) == (
            value.cost,
            value.cost_source,
            value.price_id,
            value.rate_id,
        ):
            continue
        before.append(rollup_row(record))
        set_valuation(record, value)
        after.append(rollup_row(record))
        dirty.append(record)
    if dirty:
        UsageRecord.objects.bulk_update(dirty, VALUATION_FIELDS, batch_size=500)
        rollups.move(before, after)
    return len(dirty)


VALUATION_FIELDS = ["cost", "cost_source", "price", "exchange_rate"]


def priced(record: UsageRecord, book: PriceBook) -> Valuation:
    """The valuation ingestion would give the stored record today (`usage.pricing.price_book.valuation`)."""
    reported = record.cost_source == CostSource.REPORTED
    return valuation(
        book,
        model=record.model,
        at=record.occurred_at,
        served=was_served(record.status_code, record.error_cause),
        tokens_source=record.tokens_source,
        prompt_tokens=record.prompt_tokens,
        cached_tokens=record.cached_tokens,
        completion_tokens=record.completion_tokens,
        reported_cost=record.cost if reported else None,
    )


def set_valuation(record: UsageRecord, value: Valuation) -> None:
    record.cost, record.cost_source = value.cost, value.cost_source
    record.price_id, record.exchange_rate_id = value.price_id, value.rate_id


def rollup_row(record: UsageRecord) -> dict[str, Any]:
    """A stored record as the row dict `usage.rollups.add` sums (the shape ingestion builds)."""
    return {
        "account": record.account_id,
        "occurred_at": record.occurred_at.astimezone(UTC),
        "model": record.model,
        "api_key": record.api_key_id,
        "team": record.team,
        "tokens_source": record.tokens_source,
        "error_cause": record.error_cause,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cached_tokens": record.cached_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "cost": record.cost,
        "latency_ms": record.latency_ms,
    }
