"""Keeping allocations, expiries and the wallet's usage charges up to date (a write service).

`refresh_allocations(account)` finds the earliest moment whose allocations may be
wrong, the **checkpoint**, and recomputes forward from it:

- the earliest record that has no allocation yet (new or late records);
- the earliest moment a recompute was asked for (a purchase recorded or voided);
- the expiry of a purchase that has expired without its expiry being recorded;
- the earliest record whose tokens or cost changed after it was allocated (checked
  after a repricing, and by the daily full check).

The checkpoint is that exact instant, not a day boundary: allocations before it
stay as they are and the tokens they used are read back per purchase; allocations
and expiries from it on are deleted and rewritten by `billing.allocation`, taking
records in (occurred_at, request_id) order, so the result is the same whatever
order or batches the records arrived in. It runs in one transaction under a lock
on the account's BillingState row, so concurrent runs serialise and readers never
see a half-done recompute.

The paid rollup (`billing.paid`, what plan tokens and wallet charges cost per day, model,
key and team) moves with the allocations in the same transaction: what the deleted rows
had added is subtracted and what the new rows add is added.

The wallet's usage charges that follow are posted by `billing.usage_charges`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, F, Max, Min, OuterRef, Q, Sum
from django.utils import timezone

from billing import paid
from billing.allocation import Allocator, Grant, Usage
from billing.models import (
    Allocation,
    BillingState,
    PlanExpiry,
    PlanPurchase,
    RecomputeRequest,
)
from billing.usage_charges import settle_usage, utc_day
from toki_dashboard import background
from usage import selectors as usage_selectors
from usage.models import Account, RawRetention, RepricingRun, UsageRecord

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2000
# A transaction inserting records is assumed to commit within this long: records
# with ids seen this long ago are not scanned again for missing allocations.
SETTLE = timedelta(minutes=10)
RECORD_FIELDS = (
    "id",
    "request_id",
    "occurred_at",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
)


# --- Asking for work -----------------------------------------------------------------


def schedule_allocation(account_id: int, *, delay: float | None = None) -> None:
    """Refresh the account's allocations in the background once the current transaction
    commits; requests within `delay` seconds of one another share one task."""
    wait = settings.BILLING_ALLOCATION_DELAY_SECONDS if delay is None else delay
    key = f"billing:allocate:{connection.settings_dict['NAME']}:{account_id}"

    def enqueue() -> None:
        if cache.add(key, 1, timeout=max(1, int(wait))):
            background.enqueue("billing.tasks.refresh_allocations", account_id, countdown=wait)

    # robust: what was committed stays committed if the broker is down; the periodic
    # refresh (CELERY_BEAT_SCHEDULE) picks the work up.
    transaction.on_commit(enqueue, robust=True)


def request_recompute(account: Account, from_time: datetime, reason: str) -> None:
    """Allocations from `from_time` on must be recomputed; done in the background."""
    RecomputeRequest.objects.create(account=account, from_time=from_time, reason=reason[:200])
    schedule_allocation(account.pk)


# --- Refreshing ------------------------------------------------------------------------


@dataclass
class RefreshResult:
    checkpoint: datetime | None = None
    records: int = 0
    allocations: int = 0
    expiries: int = 0
    ledger_entries: int = 0


def repricing_in_progress(account: Account) -> bool:
    return usage_selectors.repricing_progress(account) is not None


def refresh_allocations(account: Account, *, now: datetime | None = None, full: bool = False) -> RefreshResult:
    """Bring allocations, expiries and usage charges up to date; `now` decides which
    purchases have expired. `full` also rescans records and costs already settled."""
    now = now or timezone.now()
    clock = timezone.now()
    with transaction.atomic():
        state = _locked_state(account)
        requests = list(RecomputeRequest.objects.filter(account=account).values_list("pk", "from_time"))
        newest_id = UsageRecord.objects.filter(account=account).aggregate(m=Max("pk"))["m"] or 0
        reasons = [at for _, at in requests] + [
            _earliest_unallocated(account, after_id=0 if full else state.settled_record_id),
            _earliest_unrecorded_expiry(account, now),
            _earliest_changed_record(account, state, clock, full=full),
        ]
        starts = [at for at in reasons if at is not None]
        result = RefreshResult()
        if starts:
            result = recompute_from(account, _within_retention(min(starts)), now=now)
            RecomputeRequest.objects.filter(pk__in=[pk for pk, _ in requests]).delete()
            state.last_checkpoint = result.checkpoint
        if state.paid_rollup_zone != settings.DASHBOARD_TIME_ZONE:  # first build, or days in another zone
            paid.rebuild(account)
            state.paid_rollup_zone = settings.DASHBOARD_TIME_ZONE
        _advance_watermark(state, newest_id, clock)
        state.last_allocated_at = clock
        state.save()
    if result.checkpoint is not None:
        logger.info(
            "allocations of %s recomputed from %s: %d records, %d rows, %d expiries, %d ledger entries",
            account.slug,
            result.checkpoint.isoformat(),
            result.records,
            result.allocations,
            result.expiries,
            result.ledger_entries,
        )
    return result


def _within_retention(checkpoint: datetime) -> datetime:
    """A checkpoint no earlier than the raw records retention keeps (RAW_RETENTION_MONTHS).

    Before it the records are gone, so the allocations, expiries and charges there are the
    only account of them and stay as they are: a purchase recorded or voided back then
    changes what is allocated from the retention boundary on."""
    kept_from = RawRetention.kept_from_now()
    return checkpoint if kept_from is None else max(checkpoint, kept_from)


def _locked_state(account: Account) -> BillingState:
    BillingState.objects.get_or_create(account=account)
    return BillingState.objects.select_for_update().get(account=account)


def _earliest_unallocated(account: Account, *, after_id: int) -> datetime | None:
    has_rows = Exists(Allocation.objects.filter(record=OuterRef("pk")))
    pending = UsageRecord.objects.filter(account=account, pk__gt=after_id).filter(~has_rows)
    kept_from = RawRetention.kept_from_now()
    if kept_from is not None:  # a late record from before it is summarised only, never allocated
        pending = pending.filter(occurred_at__gte=kept_from)
    return pending.aggregate(at=Min("occurred_at"))["at"]


def _earliest_unrecorded_expiry(account: Account, now: datetime) -> datetime | None:
    expired = PlanPurchase.objects.filter(
        account=account, voided_at__isnull=True, expires_at__lte=now, expiry__isnull=True
    )
    return expired.aggregate(at=Min("expires_at"))["at"]


def _earliest_changed_record(account: Account, state: BillingState, clock: datetime, *, full: bool) -> datetime | None:
    """After a repricing (or in a full check): the earliest record whose tokens or cost are
    no longer those its allocation was computed from."""
    finished = RepricingRun.objects.filter(account=account, finished_at__isnull=False)
    if state.costs_checked_at is not None:
        finished = finished.filter(finished_at__gte=state.costs_checked_at)
    if not full and not finished.exists():
        return None
    if not repricing_in_progress(account):
        state.costs_checked_at = clock  # a repricing still running is checked again when it has finished
    wallet = Q(purchase__isnull=True)
    # Priced or not matters to every row (paid counts plan tokens of unpriced records apart);
    # the cost itself only to what the wallet was charged.
    changed = (
        ~Q(record_tokens=F("record__prompt_tokens") + F("record__completion_tokens"))
        | Q(record_cost__isnull=True, record__cost__isnull=False)
        | Q(record_cost__isnull=False, record__cost__isnull=True)
        | (wallet & Q(record_cost__isnull=False, record__cost__isnull=False) & ~Q(record_cost=F("record__cost")))
    )
    stale = Allocation.objects.filter(account=account).filter(changed)
    kept_from = RawRetention.kept_from_now()
    if kept_from is not None:  # allocations whose records retention dropped have nothing to compare with
        stale = stale.filter(occurred_at__gte=kept_from)
    return stale.aggregate(at=Min("occurred_at"))["at"]


def _advance_watermark(state: BillingState, newest_id: int, clock: datetime) -> None:
    if state.candidate_at is not None and state.candidate_at <= clock - SETTLE:
        state.settled_record_id = max(state.settled_record_id, state.candidate_record_id)
        state.candidate_at = None
    if state.candidate_at is None:
        state.candidate_record_id, state.candidate_at = newest_id, clock


# --- Recomputing -------------------------------------------------------------------------


def grants_of(account: Account, *, expiring_from: datetime | None = None) -> list[Grant]:
    """The account's purchases that are not voided (and expire at or after `expiring_from`)."""
    purchases = PlanPurchase.objects.filter(account=account, voided_at__isnull=True)
    if expiring_from is not None:
        purchases = purchases.filter(expires_at__gte=expiring_from)
    return [
        Grant(
            id=p.pk,
            tokens=p.tokens,
            effective_at=p.effective_at,
            expires_at=p.expires_at,
            models=tuple(p.allowed_models),
            priority=p.priority,
            basis=p.token_basis,
        )
        for p in purchases
    ]


def _records_from(account: Account, checkpoint: datetime) -> Iterator[list[tuple[Usage, tuple[int | None, str]]]]:
    """The account's records from the checkpoint on, in allocation order, a chunk at a time,
    each with the key and team paid is grouped by."""
    records = (
        UsageRecord.objects.filter(account=account, occurred_at__gte=checkpoint)
        .order_by("occurred_at", "request_id")
        .values_list(*RECORD_FIELDS, "api_key_id", "team")
    )
    last: tuple[datetime, str] | None = None
    while True:
        page = records
        if last is not None:
            page = records.filter(Q(occurred_at__gt=last[0]) | Q(occurred_at=last[0], request_id__gt=last[1]))
        chunk = [(Usage(*row[:-2]), (row[-2], row[-1])) for row in page[:CHUNK_SIZE]]
        if not chunk:
            return
        yield chunk
        last = chunk[-1][0].order


def recompute_from(account: Account, checkpoint: datetime, *, now: datetime) -> RefreshResult:
    """Rewrite allocations and expiries from `checkpoint` on and post the usage charges
    that follow. Call inside a transaction holding the account's BillingState lock."""
    grants = grants_of(account, expiring_from=checkpoint)
    used_before = _used_before(grants, checkpoint)
    paid_ledger = paid.Ledger(account)
    _clear_from(account, checkpoint, paid_ledger)

    result = RefreshResult(checkpoint=checkpoint)
    allocator = Allocator(grants, used_before)
    charged: dict[date, Decimal] = defaultdict(Decimal)
    for chunk in _records_from(account, checkpoint):
        rows = _allocate_chunk(account, chunk, allocator, paid_ledger, charged)
        Allocation.objects.bulk_create(rows, batch_size=1000)
        result.records += len(chunk)
        result.allocations += len(rows)

    result.expiries = _record_expiries(account, allocator, now=now, since=checkpoint)
    paid_ledger.apply()
    result.ledger_entries = settle_usage(account, checkpoint, charged)
    return result


def _used_before(grants: list[Grant], checkpoint: datetime) -> dict[int, int]:
    """Tokens each purchase had given before the checkpoint (the allocations kept)."""
    return dict(
        Allocation.objects.filter(purchase_id__in=[g.id for g in grants], occurred_at__lt=checkpoint)
        .values("purchase_id")
        .annotate(tokens=Sum("tokens"))
        .values_list("purchase_id", "tokens")
    )


def _clear_from(account: Account, checkpoint: datetime, paid_ledger: paid.Ledger) -> None:
    """Take what the allocations from the checkpoint on paid out of the paid rollup, then delete
    them and the expiries the recompute writes again."""
    paid_ledger.remove(paid.stored_shares(account, start=checkpoint))
    Allocation.objects.filter(account=account, occurred_at__gte=checkpoint).delete()
    PlanExpiry.objects.filter(account=account).filter(
        Q(purchase__expires_at__gte=checkpoint) | Q(purchase__voided_at__isnull=False)
    ).delete()


def _allocate_chunk(
    account: Account,
    chunk: list[tuple[Usage, tuple[int | None, str]]],
    allocator: Allocator,
    paid_ledger: paid.Ledger,
    charged: dict[date, Decimal],
) -> list[Allocation]:
    """A chunk of records allocated in order: the rows to write; what was paid goes to the
    ledger and what the wallet was charged to `charged`, by UTC day."""
    rows = []
    for usage, (api_key_id, team) in chunk:
        shares = allocator.allocate(usage)
        paid_ledger.add(
            [
                paid.RecordShares(
                    usage.occurred_at,
                    usage.model,
                    api_key_id,
                    team,
                    usage.cost is None,
                    [(share.purchase_id, share.tokens, share.amount) for share in shares],
                )
            ]
        )
        for share in shares:
            rows.append(
                Allocation(
                    account=account,
                    record_id=share.record_id,
                    occurred_at=share.occurred_at,
                    purchase_id=share.purchase_id,
                    tokens=share.tokens,
                    amount=share.amount,
                    record_tokens=usage.total_tokens,
                    record_cost=usage.cost,
                )
            )
            if share.purchase_id is None and share.amount:
                charged[utc_day(share.occurred_at)] += share.amount
    return rows


def _record_expiries(account: Account, allocator: Allocator, *, now: datetime, since: datetime) -> int:
    """Store what the purchases that expired since the checkpoint left unused; how many."""
    expiries = [
        PlanExpiry(account=account, purchase_id=e.purchase_id, tokens=e.tokens, expired_at=e.expired_at)
        for e in allocator.expiries(now=now, since=since)
    ]
    PlanExpiry.objects.bulk_create(expiries)
    return len(expiries)
