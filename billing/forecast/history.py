"""The balance history the forecast chart draws: the wallet day by day, and the provider's readings."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.forecast.model import DAY
from billing.models import Allocation, BalanceSnapshot, PlanPurchase, WalletEntry
from usage.models import Account
from usage.periods import dashboard_tz


@dataclass(frozen=True)
class BalancePoint:
    at: datetime
    token_balance: int
    wallet_balance: Decimal


@dataclass(frozen=True)
class ReportedPoint:
    at: datetime
    balance: Decimal
    currency: str


def balance_history(account: Account, *, now: datetime | None = None, days: int = 30) -> list[BalancePoint]:
    """The token balance (plans in effect) and the wallet at the end of each of the last
    `days` days, and now; from daily sums of allocations and ledger lines (in the database)."""
    now = now or timezone.now()
    tz = dashboard_tz()
    today = datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)
    start = today - timedelta(days=days - 1)
    opening = WalletEntry.objects.filter(account=account, occurred_at__lt=start).aggregate(t=Sum("amount"))["t"]
    daily_wallet = dict(
        WalletEntry.objects.filter(account=account, occurred_at__gte=start, occurred_at__lte=now)
        .annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("day")
        .annotate(t=Sum("amount"))
        .values_list("day", "t")
    )
    purchases = list(
        PlanPurchase.objects.filter(
            account=account, voided_at__isnull=True, expires_at__gt=start, effective_at__lte=now
        )
    )
    used_before = dict(
        Allocation.objects.filter(purchase__in=purchases, occurred_at__lt=start)
        .values("purchase")
        .annotate(t=Sum("tokens"))
        .values_list("purchase", "t")
    )
    daily_used: dict[date, dict[int, int]] = defaultdict(dict)
    for purchase_id, day, tokens in (
        Allocation.objects.filter(purchase__in=purchases, occurred_at__gte=start, occurred_at__lte=now)
        .annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("purchase", "day")
        .annotate(t=Sum("tokens"))
        .values_list("purchase", "day", "t")
    ):
        daily_used[day][purchase_id] = tokens
    wallet = opening or Decimal(0)
    used = {p.pk: used_before.get(p.pk, 0) for p in purchases}
    points = []
    for index in range(days):  # the end of each day; today's is now
        day = start.date() + timedelta(days=index)
        at = min(datetime.combine(day + DAY, time(0), tzinfo=tz), now)
        wallet += daily_wallet.get(day, Decimal(0))
        for purchase_id, tokens in daily_used.get(day, {}).items():
            used[purchase_id] += tokens
        tokens_left = sum(p.tokens - used[p.pk] for p in purchases if p.effective_at <= at < p.expires_at)
        points.append(BalancePoint(at=at, token_balance=max(tokens_left, 0), wallet_balance=wallet))
    return points


def reported_balances(account: Account, *, now: datetime | None = None, days: int = 30) -> list[ReportedPoint]:
    now = now or timezone.now()
    rows = BalanceSnapshot.objects.filter(
        account=account, balance__isnull=False, taken_at__gte=now - timedelta(days=days), taken_at__lte=now
    ).order_by("taken_at")
    return [ReportedPoint(r.taken_at, r.balance, r.currency) for r in rows if r.balance is not None]
