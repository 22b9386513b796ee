"""The provider's balance change between two readings against what the dashboard consumed, and
the likely causes of a difference."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Q, Sum, Value
from django.db.models.functions import Coalesce

from billing.models import (
    Allocation,
    BalanceSnapshot,
    BillingState,
    WalletEntry,
    WalletEntryKind,
)
from billing.selectors.balances import money_or_zero
from usage.identity import SourceOverlap, source_overlap
from usage.models import Account, HourlyUsage, UsageRecord


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
    ledger_entries = money_or_zero(ledger.aggregate(t=Sum("amount"))["t"])
    wallet_rows = Allocation.objects.filter(account=account, purchase__isnull=True, **window)
    charged = wallet_rows.aggregate(t=Sum("amount"), unpriced=Count("id", filter=Q(amount__isnull=True)))
    dashboard = money_or_zero(charged["t"])
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
