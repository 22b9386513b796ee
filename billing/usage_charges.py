"""The wallet's usage charges: what no plan covered, posted to the ledger per UTC day.

A day's charge is posted as the difference between the day's wallet allocations and what was
posted for it before (`billing.recompute.recompute_from` calls `settle_usage` after rewriting
the allocations): the ledger stays append-only and the entries of a day always add up to that
day's allocations.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time
from decimal import Decimal

from billing.models import Allocation, WalletEntry, WalletEntryKind
from usage.models import Account

USAGE_KEY_PREFIX = "sys:usage:"


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def settle_usage(account: Account, checkpoint: datetime, charged: dict[date, Decimal]) -> int:
    """Post, for each UTC day from the checkpoint's, what its wallet allocations add up to
    minus what was already posted for it. Returns how many entries were posted."""
    first_day = utc_day(checkpoint)
    earlier_same_day = Allocation.objects.filter(
        account=account,
        purchase__isnull=True,
        amount__isnull=False,
        occurred_at__gte=_day_start(first_day),
        occurred_at__lt=checkpoint,
    ).values_list("amount", flat=True)
    for amount in earlier_same_day:  # summed here, exactly, rather than as floats by SQLite
        assert amount is not None  # filtered on amount__isnull=False
        charged[first_day] += amount

    posted: dict[date, Decimal] = defaultdict(Decimal)
    lines: Counter[date] = Counter()
    entries = WalletEntry.objects.filter(account=account, kind=WalletEntryKind.USAGE_CHARGE, usage_day__gte=first_day)
    for day, amount in entries.values_list("usage_day", "amount"):
        assert day is not None  # a usage charge always names its day
        posted[day] += amount
        lines[day] += 1

    new = []
    for day in sorted(set(charged) | set(posted)):
        delta = -charged.get(day, Decimal(0)) - posted.get(day, Decimal(0))
        if not delta:
            continue
        note = f"Usage not covered by plans on {day:%Y-%m-%d}" + (" (recomputed)" if lines[day] else "")
        new.append(
            WalletEntry(
                account=account,
                kind=WalletEntryKind.USAGE_CHARGE,
                amount=delta,
                currency=account.currency,
                occurred_at=_day_start(day),
                usage_day=day,
                note=note,
                idempotency_key=f"{USAGE_KEY_PREFIX}{day:%Y-%m-%d}:{lines[day] + 1}",
                created_via="allocation",
            )
        )
    WalletEntry.objects.bulk_create(new)
    return len(new)
