"""The Plans & wallet and Reports pages' reads: the ledger by month and day, the audit trail,
monthly consumption and the statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import (
    Allocation,
    AuditEvent,
    PlanExpiry,
    WalletEntry,
    WalletEntryKind,
)
from billing.paid import paid_for_tokens
from billing.selectors.balances import ZERO, money_or_zero
from usage import money
from usage.models import Account
from usage.money import MoneyRow
from usage.periods import Period


def wallet_ledger(account: Account) -> QuerySet[WalletEntry]:
    """Every ledger line that moved money, newest first (the page paginates it). A day's usage
    posting that came to zero moves nothing and is left out (`zero_ledger_lines` counts them)."""
    return (
        WalletEntry.objects.filter(account=account)
        .exclude(amount=0)
        .select_related("created_by", "purchase")
        .order_by("-occurred_at", "-id")
    )


def zero_ledger_lines(account: Account) -> int:
    return WalletEntry.objects.filter(account=account, amount=0).count()


@dataclass(frozen=True)
class LedgerDay:
    day: date
    total: Decimal  # every entry of the day, not only those on the page
    entries: list[WalletEntry]


@dataclass(frozen=True)
class LedgerMonth:
    month: date  # its first day
    total: Decimal
    days: list[LedgerDay]


def ledger_by_month_and_day(account: Account, entries: list[WalletEntry], tz: tzinfo) -> list[LedgerMonth]:
    """A page of ledger entries (newest first) grouped by month and day of `tz`, each group with
    the net of all its entries: two grouped queries over the months the page touches."""
    if not entries:
        return []
    local = [(entry, timezone.localtime(entry.occurred_at, tz).date()) for entry in entries]
    first_month = local[-1][1].replace(day=1)
    last_day = local[0][1]
    start = datetime.combine(first_month, time.min, tzinfo=tz)
    end_month = (last_day.replace(day=1) + timedelta(days=32)).replace(day=1)
    end = datetime.combine(end_month, time.min, tzinfo=tz)
    rows = WalletEntry.objects.filter(account=account, occurred_at__gte=start, occurred_at__lt=end)
    day_totals = dict(
        rows.annotate(local_day=TruncDate("occurred_at", tzinfo=tz))
        .values("local_day")
        .annotate(total=Sum("amount"))
        .values_list("local_day", "total")
        .order_by()
    )
    month_totals: dict[date, Decimal] = {}
    for day, total in day_totals.items():
        month_totals[day.replace(day=1)] = month_totals.get(day.replace(day=1), ZERO) + total
    months: list[LedgerMonth] = []
    for entry, day in local:
        month = day.replace(day=1)
        if not months or months[-1].month != month:
            months.append(LedgerMonth(month, month_totals.get(month, ZERO), []))
        days = months[-1].days
        if not days or days[-1].day != day:
            days.append(LedgerDay(day, day_totals.get(day, ZERO), []))
        days[-1].entries.append(entry)
    return months


# Events the application makes by itself (demo loading, provider sync): no person and no
# API token behind them. The audit trail leaves them out unless asked.
SYSTEM_EVENTS = Q(actor__isnull=True) & ~Q(actor_label__startswith="user ") & ~Q(actor_label__startswith="API token")


def audit_trail(
    account: Account, *, actor: str = "", action: str = "", include_system: bool = False
) -> QuerySet[AuditEvent]:
    """Who did what, when, on the account's billing objects, newest first: by one actor (its
    label) and one action when given, system events only when asked (or their actor chosen)."""
    events = AuditEvent.objects.filter(account=account)
    if actor:
        events = events.filter(actor_label=actor)
    elif not include_system:
        events = events.exclude(SYSTEM_EVENTS)
    if action:
        events = events.filter(action=action)
    return events.select_related("actor").order_by("-at", "-id")


@dataclass(frozen=True)
class AuditChoices:
    actors: list[str]  # actor labels, people and tokens first, then the application's
    actions: list[str]
    system_events: int


def audit_choices(account: Account) -> AuditChoices:
    events = AuditEvent.objects.filter(account=account)
    system = set(events.filter(SYSTEM_EVENTS).values_list("actor_label", flat=True).distinct())
    labels = set(events.values_list("actor_label", flat=True).distinct())
    return AuditChoices(
        actors=sorted(labels - system) + sorted(system),
        actions=sorted(set(events.values_list("action", flat=True).distinct())),
        system_events=events.filter(SYSTEM_EVENTS).count(),
    )


@dataclass(frozen=True)
class PlanBurn:
    purchase_id: int
    name: str
    tokens: int


@dataclass(frozen=True)
class WalletMovements:
    """The wallet over [start, end): the opening balance, what moved by kind, the closing balance."""

    opening: Decimal
    by_kind: dict[str, Decimal]
    closing: Decimal

    @property
    def usage_charges(self) -> Decimal:
        return self.by_kind.get(WalletEntryKind.USAGE_CHARGE, ZERO)

    @property
    def top_ups(self) -> Decimal:
        return self.by_kind.get(WalletEntryKind.TOP_UP, ZERO)

    @property
    def lines(self) -> list[tuple[str, Decimal]]:
        """(label, amount) for every kind of entry, in the ledger's order of kinds."""
        return [(str(kind.label), self.by_kind.get(kind.value, ZERO)) for kind in WalletEntryKind]


@dataclass(frozen=True)
class MonthConsumption:
    plans: list[PlanBurn]
    plan_tokens: int
    expired_tokens: int
    expired_value: dict[str, Decimal]  # what the tokens that expired unused were paid, by currency
    wallet: WalletMovements


def consumption(account: Account, *, start: datetime, end: datetime) -> MonthConsumption:
    """Plan tokens burned (per purchase), plan tokens expired (and what they were paid), and
    wallet movements over [start, end)."""
    burned = (
        Allocation.objects.filter(account=account, purchase__isnull=False, occurred_at__gte=start, occurred_at__lt=end)
        .values("purchase_id", "purchase__name")
        .annotate(tokens=Sum("tokens"))
        .order_by("-tokens", "purchase_id")
    )
    plans = [PlanBurn(row["purchase_id"], row["purchase__name"], row["tokens"] or 0) for row in burned]
    expiries = PlanExpiry.objects.filter(account=account, expired_at__gte=start, expired_at__lt=end).select_related(
        "purchase"
    )
    expired_value: dict[str, Decimal] = {}
    for expiry in expiries:
        currency = expiry.purchase.currency
        expired_value[currency] = expired_value.get(currency, ZERO) + paid_for_tokens(expiry.tokens, expiry.purchase)
    entries = WalletEntry.objects.filter(account=account)
    opening = money_or_zero(entries.filter(occurred_at__lt=start).aggregate(t=Sum("amount"))["t"])
    moved = (
        entries.filter(occurred_at__gte=start, occurred_at__lt=end)
        .values("kind")
        .annotate(total=Sum("amount"))
        .order_by("kind")
    )
    by_kind = {row["kind"]: money_or_zero(row["total"]) for row in moved}
    wallet = WalletMovements(opening=opening, by_kind=by_kind, closing=opening + sum(by_kind.values(), ZERO))
    return MonthConsumption(
        plans=plans,
        plan_tokens=sum(p.tokens for p in plans),
        expired_tokens=sum(expiry.tokens for expiry in expiries),
        expired_value=expired_value,
        wallet=wallet,
    )


@dataclass(frozen=True)
class Statement:
    """A month's statement: usage value and paid by model, key and team (from the daily
    rollups), totals, and what the month consumed of plans and wallet."""

    period: Period
    by_model: list[MoneyRow]
    by_key: list[MoneyRow]
    by_team: list[MoneyRow]
    total: MoneyRow
    consumption: MonthConsumption

    @property
    def sections(self) -> list[tuple[str, list[MoneyRow]]]:
        return [("model", self.by_model), ("key", self.by_key), ("team", self.by_team)]


def monthly_statement(account: Account, *, first_day: date) -> Statement:
    """The statement of the calendar month starting `first_day`, months in DASHBOARD_TIME_ZONE."""
    next_month = (first_day.replace(day=28) + timedelta(days=4)).replace(day=1)
    period = Period("custom", first_day, next_month - timedelta(days=1))
    by_model, total = money.summary(account=account, period=period, group_by="model")
    by_key, _ = money.summary(account=account, period=period, group_by="api_key")
    by_team, _ = money.summary(account=account, period=period, group_by="team")

    def by_value(rows: list[MoneyRow]) -> list[MoneyRow]:
        return sorted(rows, key=lambda r: (-r.totals.cost, -r.totals.tokens, r.key))

    return Statement(
        period=period,
        by_model=by_value(by_model),
        by_key=by_value(by_key),
        by_team=by_value(by_team),
        total=total,
        consumption=consumption(account, start=period.start, end=period.end),
    )
