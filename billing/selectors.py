"""Reads of the billing app, aggregated in the database: balances, plan burn-down,
the wallet statement, why a record cost what it did, and reconciliation with what
the provider reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from billing.models import (
    Allocation,
    AuditEvent,
    BalanceSnapshot,
    BillingState,
    PlanExpiry,
    PlanPurchase,
    SyncRun,
    SyncState,
    WalletEntry,
    WalletEntryKind,
)
from billing.paid import paid_for_tokens
from usage import money
from usage.identity import SourceOverlap, source_overlap
from usage.models import Account, HourlyUsage, UsageRecord
from usage.money import MoneyRow
from usage.periods import Period

ZERO = Decimal(0)


def _money(value: Decimal | None) -> Decimal:
    return ZERO if value is None else Decimal(value)


# --- Wallet ------------------------------------------------------------------------------


def wallet_balance(account: Account, *, at: datetime | None = None) -> Decimal:
    """The wallet balance: the sum of the ledger (up to `at`, inclusive). Every surface shows
    it at the moment of billing.balances.account_balances."""
    entries = WalletEntry.objects.filter(account=account)
    if at is not None:
        entries = entries.filter(occurred_at__lte=at)
    return _money(entries.aggregate(total=Sum("amount"))["total"])


def wallet_entries(account: Account, *, start: datetime, end: datetime) -> QuerySet[WalletEntry]:
    """Ledger lines with start <= occurred_at < end, oldest first."""
    return WalletEntry.objects.filter(account=account, occurred_at__gte=start, occurred_at__lt=end).order_by(
        "occurred_at", "id"
    )


# --- Plans -------------------------------------------------------------------------------


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


# --- Provider ----------------------------------------------------------------------------


def latest_snapshot(account: Account, *, at: datetime | None = None) -> BalanceSnapshot | None:
    snapshots = BalanceSnapshot.objects.filter(account=account, balance__isnull=False)
    if at is not None:
        snapshots = snapshots.filter(taken_at__lte=at)
    return snapshots.order_by("-taken_at", "-id").first()


def sync_state(account: Account) -> SyncState | None:
    return SyncState.objects.filter(account=account).first()


def sync_history(account: Account, *, limit: int = 20) -> list[SyncRun]:
    return list(SyncRun.objects.filter(account=account).order_by("-started_at", "-id")[:limit])


# --- Explaining a record -------------------------------------------------------------------


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


# --- Reconciliation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cause:
    code: str  # missing_records | duplicate_records | unpriced_records | estimated_tokens | price_mismatch
    message: str


@dataclass(frozen=True)
class Reconciliation:
    """Over (opening.taken_at, closing.taken_at]: how much the provider's balance went down
    beyond what the ledger's own entries explain, against what the dashboard charged."""

    opening: BalanceSnapshot
    closing: BalanceSnapshot
    ledger_entries: Decimal  # top-ups, refunds, adjustments and wallet-paid purchases in the window
    provider_consumption: Decimal
    dashboard_consumption: Decimal
    drift: Decimal  # provider − dashboard: positive when the provider charged more
    threshold: Decimal
    provider_requests: int | None
    dashboard_requests: int
    causes: list[Cause]
    # Calls two sources both brought in the window, each counted once (per pair of sources).
    overlap: list[SourceOverlap] = field(default_factory=list)

    @property
    def calls_seen_twice(self) -> int:
        return sum(pair.calls for pair in self.overlap)

    @property
    def exceeds_threshold(self) -> bool:
        return abs(self.drift) > self.threshold

    @property
    def start(self) -> datetime:
        return self.opening.taken_at

    @property
    def end(self) -> datetime:
        return self.closing.taken_at


def _snapshots_for(account: Account, start: datetime, end: datetime) -> tuple[BalanceSnapshot, BalanceSnapshot] | None:
    usable = BalanceSnapshot.objects.filter(account=account, balance__isnull=False, currency=account.currency)
    closing = usable.filter(taken_at__lte=end).order_by("-taken_at", "-id").first()
    opening = usable.filter(taken_at__lte=start).order_by("-taken_at", "-id").first()
    if opening is None:
        opening = usable.filter(taken_at__gt=start, taken_at__lte=end).order_by("taken_at", "id").first()
    if opening is None or closing is None or closing.taken_at <= opening.taken_at:
        return None
    assert opening.balance is not None and closing.balance is not None  # `usable` has balances only
    return opening, closing


def reconcile(account: Account, *, start: datetime, end: datetime) -> Reconciliation | None:
    """The provider's balance change against the dashboard's consumption between the last
    snapshot at or before `start` (else the first after it) and the last one by `end`.
    None without two snapshots in the account's currency."""
    pair = _snapshots_for(account, start, end)
    if pair is None:
        return None
    opening, closing = pair
    window = {"occurred_at__gt": opening.taken_at, "occurred_at__lte": closing.taken_at}
    ledger = WalletEntry.objects.filter(account=account, **window).exclude(kind=WalletEntryKind.USAGE_CHARGE)
    ledger_entries = _money(ledger.aggregate(t=Sum("amount"))["t"])
    wallet_rows = Allocation.objects.filter(account=account, purchase__isnull=True, **window)
    charged = wallet_rows.aggregate(t=Sum("amount"), unpriced=Count("id", filter=Q(amount__isnull=True)))
    dashboard = _money(charged["t"])
    assert opening.balance is not None and closing.balance is not None  # see _snapshots_for
    provider = ledger_entries - (closing.balance - opening.balance)
    drift = provider - dashboard
    state = BillingState.objects.filter(account=account).first() or BillingState(account=account)
    threshold = max(state.drift_threshold_amount, dashboard.copy_abs() * state.drift_threshold_percent / 100)
    provider_requests = None
    if opening.request_count is not None and closing.request_count is not None:
        provider_requests = closing.request_count - opening.request_count
    dashboard_requests = UsageRecord.objects.filter(account=account, **window).count()
    causes = likely_causes(
        account,
        opening=opening,
        closing=closing,
        drift=drift,
        threshold=threshold,
        dashboard=dashboard,
        provider_requests=provider_requests,
        dashboard_requests=dashboard_requests,
        unpriced=charged["unpriced"],
    )
    return Reconciliation(
        opening=opening,
        closing=closing,
        ledger_entries=ledger_entries,
        provider_consumption=provider,
        dashboard_consumption=dashboard,
        drift=drift,
        threshold=threshold,
        provider_requests=provider_requests,
        dashboard_requests=dashboard_requests,
        causes=causes,
        overlap=source_overlap(account, start=opening.taken_at, end=closing.taken_at),
    )


def likely_causes(
    account: Account,
    *,
    opening: BalanceSnapshot,
    closing: BalanceSnapshot,
    drift: Decimal,
    threshold: Decimal,
    dashboard: Decimal,
    provider_requests: int | None,
    dashboard_requests: int,
    unpriced: int,
) -> list[Cause]:
    """Why the two may differ, most likely first; empty when the drift is within the threshold."""
    if abs(drift) <= threshold:
        return []
    causes: list[Cause] = []
    if provider_requests is not None and provider_requests > dashboard_requests:
        causes.append(
            Cause(
                "missing_records",
                f"The provider counted {provider_requests:,} requests, the dashboard has {dashboard_requests:,}: "
                f"{provider_requests - dashboard_requests:,} records are missing (traffic that bypasses the "
                "proxy, or a gap in the sync).",
            )
        )
    elif provider_requests is not None and provider_requests < dashboard_requests:
        causes.append(
            Cause(
                "duplicate_records",
                f"The dashboard has {dashboard_requests:,} requests, the provider counted {provider_requests:,}: "
                "some records may be counted twice (the same calls from two sources that share no request id?).",
            )
        )
    if unpriced:
        causes.append(
            Cause(
                "unpriced_records",
                f"{unpriced:,} requests charged to the wallet have no price, so their cost is missing.",
            )
        )
    hours = HourlyUsage.objects.filter(account=account, hour__gte=opening.taken_at, hour__lt=closing.taken_at)
    tokens = hours.aggregate(
        all=Coalesce(Sum("prompt_tokens"), Value(0)) + Coalesce(Sum("completion_tokens"), Value(0)),
        estimated=Coalesce(Sum("estimated_tokens"), Value(0)),
    )
    if tokens["estimated"]:
        share = 100 * tokens["estimated"] / max(tokens["all"], 1)
        causes.append(Cause("estimated_tokens", f"{share:.0f}% of the tokens were estimated, not reported by the API."))
    if provider_requests is None or provider_requests == dashboard_requests:
        direction = "more" if drift > 0 else "less"
        share = f" ({abs(drift) * 100 / dashboard:.1f}% of its own figure)" if dashboard else ""
        causes.append(
            Cause(
                "price_mismatch",
                f"The provider charged {abs(drift):,.2f} {account.currency} {direction} than the dashboard computed"
                f"{share}: the price book may not match TOKI's prices.",
            )
        )
    return causes


# --- The Plans & wallet and Reports pages (appended) ----------------------------------------


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
    opening = _money(entries.filter(occurred_at__lt=start).aggregate(t=Sum("amount"))["t"])
    moved = (
        entries.filter(occurred_at__gte=start, occurred_at__lt=end)
        .values("kind")
        .annotate(total=Sum("amount"))
        .order_by("kind")
    )
    by_kind = {row["kind"]: _money(row["total"]) for row in moved}
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
