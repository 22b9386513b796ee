"""Wallet and plan balances, the provider's readings and how one record was paid."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import (
    Allocation,
    BalanceSnapshot,
    PlanExpiry,
    PlanPurchase,
    SyncRun,
    SyncState,
    WalletEntry,
)
from usage.models import Account, UsageRecord

ZERO = Decimal(0)


def money_or_zero(value: Decimal | None) -> Decimal:
    return ZERO if value is None else Decimal(value)


def wallet_balance(account: Account, *, at: datetime | None = None) -> Decimal:
    """The wallet balance: the sum of the ledger (up to `at`, inclusive). Every surface shows
    it at the moment of billing.balances.account_balances."""
    entries = WalletEntry.objects.filter(account=account)
    if at is not None:
        entries = entries.filter(occurred_at__lte=at)
    return money_or_zero(entries.aggregate(total=Sum("amount"))["total"])


def wallet_entries(account: Account, *, start: datetime, end: datetime) -> QuerySet[WalletEntry]:
    """Ledger lines with start <= occurred_at < end, oldest first."""
    return WalletEntry.objects.filter(account=account, occurred_at__gte=start, occurred_at__lt=end).order_by(
        "occurred_at", "id"
    )


@dataclass(frozen=True)
class PlanStatus:
    purchase: PlanPurchase
    tokens_used: int
    tokens_expired: int | None  # None: not expired (yet)

    @property
    def tokens_remaining(self) -> int:
        return 0 if self.tokens_expired is not None else self.purchase.tokens - self.tokens_used


def plan_statuses(account: Account, *, now: datetime | None = None, include_expired: bool = False) -> list[PlanStatus]:
    """Purchases that are not voided, in burn order, with the tokens they had given by `now`."""
    now = now or timezone.now()
    purchases = PlanPurchase.objects.filter(account=account, voided_at__isnull=True)
    if not include_expired:
        purchases = purchases.filter(expires_at__gt=now)
    # One grouped sum over the allocations (index purchase, occurred_at), rather than an
    # annotation that groups the join by every column of the purchase: ten times faster.
    given = dict(
        Allocation.objects.filter(purchase__in=purchases.values("pk"), occurred_at__lte=now)
        .values("purchase_id")
        .annotate(tokens=Sum("tokens"))
        .order_by()
        .values_list("purchase_id", "tokens")
    )
    statuses = [
        PlanStatus(p, given.get(p.pk) or 0, p.expiry.tokens if hasattr(p, "expiry") and p.expires_at <= now else None)
        for p in purchases.select_related("expiry")
    ]
    return sorted(statuses, key=lambda s: (-s.purchase.priority, s.purchase.expires_at, s.purchase.effective_at))


def token_balance(statuses: list[PlanStatus], *, now: datetime) -> int:
    """The usable token balance, the one definition every surface shows (through
    billing.balances.account_balances): what the purchases in effect at `now` have left,
    whatever models they cover."""
    return sum(s.tokens_remaining for s in statuses if s.purchase.effective_at <= now < s.purchase.expires_at)


def expired_tokens(account: Account) -> int:
    tokens: int = PlanExpiry.objects.filter(account=account).aggregate(t=Coalesce(Sum("tokens"), Value(0)))["t"]
    return tokens


def latest_snapshot(account: Account, *, at: datetime | None = None) -> BalanceSnapshot | None:
    snapshots = BalanceSnapshot.objects.filter(account=account, balance__isnull=False)
    if at is not None:
        snapshots = snapshots.filter(taken_at__lte=at)
    return snapshots.order_by("-taken_at", "-id").first()


def sync_state(account: Account) -> SyncState | None:
    return SyncState.objects.filter(account=account).first()


def sync_history(account: Account, *, limit: int = 20) -> list[SyncRun]:
    return list(SyncRun.objects.filter(account=account).order_by("-started_at", "-id")[:limit])


@dataclass(frozen=True)
class AllocationLine:
    purchase_id: int | None
    purchase_name: str  # "wallet" for the wallet
    tokens: int
    amount: Decimal | None
    record_cost: Decimal | None


def explain_record(record: UsageRecord) -> list[AllocationLine]:
    """Where a record's tokens went: purchases in burn order, then the wallet."""
    rows = Allocation.objects.filter(record=record).select_related("purchase").order_by("purchase_id")
    lines = [
        AllocationLine(
            row.purchase_id,
            row.purchase.name if row.purchase else "wallet",
            row.tokens,
            row.amount,
            row.record_cost,
        )
        for row in rows
    ]
    return sorted(lines, key=lambda line: line.purchase_id is None)
