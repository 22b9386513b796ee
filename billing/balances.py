"""The balances every surface shows, read once for one moment.

`account_balances(account, at=None)` is the one read behind the Plans & wallet page, the
Overview's balance card, the alert rules (so their emails and the banner),
/api/v1/balance and the forecast chart. For the moment `at` it holds:

- the **usable token balance**: tokens left on the plans in effect at `at`, whatever
  models they cover (`selectors.token_balance`), and what those plans granted;
- the **wallet balance**: the ledger up to `at` (`selectors.wallet_balance`);
- the **forecast** of those same plans and that wallet from that same moment, with the
  same history (`billing.forecast`): when the token balance and the wallet run out, and
  per plan the tokens projected to expire unused, with what they were paid.

Without `at`, the balances of the current moment are cached, keyed on the state of the
data they come from (the last allocation refresh, the ledger, the purchases): every
surface then shows the same figures, computed once, until that data changes, and for at
most BILLING_BALANCES_MAX_AGE_SECONDS, or until the next moment a plan starts or expires
or a day ends (the forecast reads complete days). With `at`, they are computed for that
moment.

How fresh the provider's balance is (`balance_freshness`) is read here too, so that the
card, the Plans page and the API say the same about it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max, OuterRef, Subquery
from django.utils import timezone

from billing import selectors
from billing.forecast import AccountForecast, PlanForecast, RunOut, forecast_from_inputs, read_inputs
from billing.models import BillingState, PlanPurchase, WalletEntry
from billing.paid import paid_for_tokens
from usage.models import Account, Provider
from usage.periods import dashboard_tz

LOW_TOKEN_SHARE = Decimal("0.10")  # below a tenth of what the plans in effect granted
RUNS_OUT_SOON = timedelta(days=7)
STALE_AFTER_INTERVALS = 2  # a sync older than twice its interval is stale


@dataclass(frozen=True)
class PlanBalance:
    """A purchase not yet expired: what it has given and has left, and its forecast."""

    status: selectors.PlanStatus
    forecast: PlanForecast | None  # None: the forecast says nothing about it

    @property
    def purchase(self) -> PlanPurchase:
        return self.status.purchase

    @property
    def tokens_used(self) -> int:
        return self.status.tokens_used

    @property
    def tokens_remaining(self) -> int:
        return self.status.tokens_remaining

    @property
    def projected_unused(self) -> int | None:
        return None if self.forecast is None else self.forecast.projected_unused_tokens

    @property
    def projected_unused_value(self) -> Decimal | None:
        """What the tokens projected to expire unused were paid, in the purchase's currency."""
        unused = self.projected_unused
        return None if unused is None else paid_for_tokens(unused, self.purchase)

    def in_effect(self, at: datetime) -> bool:
        return self.purchase.effective_at <= at < self.purchase.expires_at


@dataclass(frozen=True)
class AccountBalances:
    account_id: int
    currency: str
    at: datetime
    plans: tuple[PlanBalance, ...]  # not expired at `at`, in burn order
    token_balance: int  # usable: left on the plans in effect at `at`
    tokens_granted: int  # by the plans in effect at `at`
    wallet_balance: Decimal
    forecast: AccountForecast

    @property
    def plans_in_effect(self) -> list[PlanBalance]:
        return [plan for plan in self.plans if plan.in_effect(self.at)]

    def plan(self, purchase_id: int) -> PlanBalance | None:
        return next((plan for plan in self.plans if plan.purchase.pk == purchase_id), None)

    @property
    def token_run_out(self) -> RunOut:
        return self.forecast.token_run_out

    @property
    def wallet_run_out(self) -> RunOut:
        return self.forecast.wallet_run_out

    @property
    def token_share(self) -> Decimal | None:
        """What is left of what the plans in effect granted (0.25 = a quarter), None without plans."""
        if not self.tokens_granted:
            return None
        return Decimal(self.token_balance) / Decimal(self.tokens_granted)

    def _soon(self, run_out: RunOut) -> bool:
        return run_out.at is not None and run_out.at - self.at <= RUNS_OUT_SOON

    @property
    def token_state(self) -> str:
        """One of "none" (no plan in effect), "empty", "low" (under a tenth left, or running
        out within a week) or "ok"."""
        if not self.tokens_granted:
            return "none"
        if self.token_balance <= 0:
            return "empty"
        share = self.token_share
        if (share is not None and share < LOW_TOKEN_SHARE) or self._soon(self.token_run_out):
            return "low"
        return "ok"

    @property
    def wallet_state(self) -> str:
        """One of "negative", "low" (projected to run out within a week) or "ok"."""
        if self.wallet_balance < 0:
            return "negative"
        if self._soon(self.wallet_run_out):
            return "low"
        return "ok"


def expired_plans(account: Account, *, at: datetime) -> list[selectors.PlanStatus]:
    """Purchases expired by `at`, the latest expiry first, with the tokens they gave and left unused."""
    statuses = selectors.plan_statuses(account, now=at, include_expired=True)
    return sorted(
        (s for s in statuses if s.purchase.expires_at <= at), key=lambda s: s.purchase.expires_at, reverse=True
    )


def _compute(account: Account, at: datetime) -> AccountBalances:
    statuses = selectors.plan_statuses(account, now=at)
    wallet = selectors.wallet_balance(account, at=at)
    forecast = forecast_from_inputs(read_inputs(account, now=at, statuses=statuses, wallet=wallet))
    in_effect = [s for s in statuses if s.purchase.effective_at <= at < s.purchase.expires_at]
    return AccountBalances(
        account_id=account.pk,
        currency=account.currency,
        at=at,
        plans=tuple(PlanBalance(s, forecast.plans.get(s.purchase.pk)) for s in statuses),
        token_balance=selectors.token_balance(statuses, now=at),
        tokens_granted=sum(s.purchase.tokens for s in in_effect),
        wallet_balance=wallet,
        forecast=forecast,
    )


def _data_state(account: Account) -> str:
    """What the balances are read from, in one query: when allocations were last refreshed,
    the newest ledger line, the purchases and their voids. Every write that moves a balance
    changes it (new records do when they are allocated, seconds after they arrive)."""
    by_account = {"account": OuterRef("pk")}
    refreshed = BillingState.objects.filter(**by_account).values("last_allocated_at")[:1]
    ledger = WalletEntry.objects.filter(**by_account).order_by("-id").values("id")[:1]
    purchases = (
        PlanPurchase.objects.filter(**by_account)
        .order_by()
        .values("account")
        .annotate(state=Count("id") * 1_000_000 + Count("voided_at"))
        .values("state")
    )
    newest = PlanPurchase.objects.filter(**by_account).order_by().values("account").annotate(m=Max("id")).values("m")
    row = (
        Account.objects.filter(pk=account.pk)
        .values_list(Subquery(refreshed), Subquery(ledger), Subquery(purchases), Subquery(newest))
        .first()
    )
    parts = (account.pk, account.created_at.isoformat(), account.currency, *(row or ()))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _valid_until(balances: AccountBalances, account: Account) -> datetime:
    """The cached balances hold until they are too old, a plan starts or expires, or a day ends."""
    at = balances.at
    limits = [at + timedelta(seconds=settings.BILLING_BALANCES_MAX_AGE_SECONDS)]
    tz = dashboard_tz()
    limits.append(datetime.combine(at.astimezone(tz).date() + timedelta(days=1), time(0), tzinfo=tz))
    upcoming = PlanPurchase.objects.filter(account=account, voided_at__isnull=True, expires_at__gt=at)
    for effective_at, expires_at in upcoming.values_list("effective_at", "expires_at"):
        limits.extend(moment for moment in (effective_at, expires_at) if moment > at)
    return min(limits)


def account_balances(account: Account, *, at: datetime | None = None) -> AccountBalances:
    """Balances and their forecast at `at`; without it, those of now, shared by every surface
    (see the module docstring)."""
    if at is not None:
        return _compute(account, at)
    now = timezone.now()
    key = f"billing:balances:{connection.settings_dict['NAME']}:{account.pk}:{_data_state(account)}"
    cached = cache.get(key)
    if cached is not None:
        valid_until, balances = cached
        if now < valid_until:
            return balances
    balances = _compute(account, now)
    cache.set(key, (_valid_until(balances, account), balances), timeout=settings.BILLING_BALANCES_MAX_AGE_SECONDS)
    return balances


# --- How fresh the provider's balance is ----------------------------------------------------


@dataclass(frozen=True)
class Freshness:
    """The last reading of the provider's balance: a sync, or (manual provider) a balance
    finance read off the console; stale once a sync is older than twice its interval."""

    kind: str  # "sync" | "manual"
    provider: str
    last_reading_at: datetime | None
    stale_since: datetime | None
    failing: bool
    last_error_at: datetime | None
    last_error: str
    last_duration_ms: int | None
    interval_minutes: int

    @property
    def state(self) -> str:
        """One of "manual", "failing", "stale", "never" or "fresh"."""
        if self.kind == "manual":
            return "manual"
        if self.failing:
            return "failing"
        if self.stale_since is not None:
            return "stale"
        return "fresh" if self.last_reading_at else "never"

    @property
    def warning(self) -> bool:
        return self.state in ("failing", "stale")


def balance_freshness(account: Account, *, now: datetime | None = None) -> Freshness:
    now = now or timezone.now()
    state = selectors.sync_state(account)
    failing, last_error_at = False, state.last_error_at if state else None
    stale_since = None
    if account.provider == Provider.MANUAL:
        kind = "manual"
        snapshot = selectors.latest_snapshot(account)
        last_reading = snapshot.taken_at if snapshot else None
    else:
        kind = "sync"
        last_reading = state.last_success_at if state else None
        failing = last_error_at is not None and (last_reading is None or last_error_at > last_reading)
        if account.sync_interval_minutes and last_reading is not None:
            limit = last_reading + timedelta(minutes=account.sync_interval_minutes * STALE_AFTER_INTERVALS)
            stale_since = limit if now >= limit else None
    return Freshness(
        kind=kind,
        provider=account.get_provider_display(),
        last_reading_at=last_reading,
        stale_since=stale_since,
        failing=failing,
        last_error_at=last_error_at,
        last_error=state.last_error if state else "",
        last_duration_ms=state.last_duration_ms if state else None,
        interval_minutes=account.sync_interval_minutes,
    )
