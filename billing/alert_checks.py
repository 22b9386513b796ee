"""What each alert rule says now: its figure, its severity tier, the subject and the numbers.

A rule has **tiers**, least severe first (run-out within 14 / 7 / 3 / 1 days; token balance
below 20 / 10 / 0 %; a budget at 50 / 80 / 100 %). `check_rule` measures the rule's figure
and says which tier it is in (0: not firing); `billing.alert_episodes` turns the changes of
tier into notifications. Every balance is read from `billing.balances.account_balances`,
the one definition every page, banner and API shows.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property

from django.conf import settings
from django.db.models import Sum
from django.db.models.functions import TruncDate

from billing.alert_tiers import effective_tiers, severity_label, tier_of
from billing.balances import AccountBalances, PlanBalance, account_balances
from billing.budgets import spend as budget_spend
from billing.budgets import text as budget_text
from billing.budgets.spend import BudgetStatus
from billing.forecast import AccountForecast
from billing.models import AlertKind, AlertRule, Budget, SyncState
from billing.paid import paid_for_tokens
from usage.exchange import conversion_note, rates_applied
from usage.models import Account, ErrorCause, HourlyUsage, Provider, UsageRecord
from usage.periods import dashboard_tz
from usage.templatetags.usage_format import money

DETAIL_LIMIT = 12


@dataclass(frozen=True)
class Check:
    """The outcome of one rule: its tier (0: not firing), the figure, the subject line, the numbers."""

    tier: int
    value: Decimal | None
    summary: str
    details: list[tuple[str, str]] = field(default_factory=list)
    page: tuple[str, ...] = ("billing:plans", "billing:alerts")  # URL names, first that exists
    tiers: tuple[Decimal, ...] = ()

    @property
    def firing(self) -> bool:
        return self.tier > 0

    @property
    def severity(self) -> str:
        return severity_label(self.tier, len(self.tiers))

    @property
    def threshold(self) -> Decimal | None:
        """The tier crossed (the least severe one when not firing)."""
        if not self.tiers:
            return None
        return self.tiers[self.tier - 1] if self.tier else self.tiers[0]


def measured(
    rule: AlertRule,
    value: Decimal | None,
    summary: str,
    details: list[tuple[str, str]] | None = None,
    page: tuple[str, ...] | None = None,
    *,
    tier: int | None = None,
) -> Check:
    """The Check of a figure: its tier is worked out from the rule's tiers unless given."""
    tiers = tuple(effective_tiers(rule))
    found = tier_of(rule, value, tiers) if tier is None else tier
    extra = {"page": page} if page is not None else {}
    return Check(found, value, summary, details or [], tiers=tiers, **extra)


def quiet(
    rule: AlertRule, summary: str, details: list[tuple[str, str]] | None = None, **page: tuple[str, ...]
) -> Check:
    """A rule that has nothing to measure now: it does not fire."""
    return measured(rule, None, summary, details, page.get("page"), tier=0)


def day_label(moment: datetime) -> str:
    """ "Fri 27 Nov" in the dashboard's time zone."""
    local = moment.astimezone(dashboard_tz())
    return f"{local:%a} {local.day} {local:%b}"


def moment_label(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    local = moment.astimezone(dashboard_tz())
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} ({settings.DASHBOARD_TIME_ZONE})"


def _percent(value: Decimal | float) -> str:
    """52.5 → "53%", 8.04 → "8.0%": whole percents once there are two digits (rounded half up)."""
    number = Decimal(value)
    places = Decimal(1) if abs(number) >= 10 else Decimal("0.1")
    return f"{number.quantize(places, rounding=ROUND_HALF_UP):,}%"


def _runs_out(moment: datetime | None, earliest: datetime | None = None, latest: datetime | None = None) -> str:
    if moment is None:
        return "no run-out projected within a year"
    return f"runs out around {day_label(moment)}"


def _range(earliest: datetime | None, latest: datetime | None) -> str:
    if earliest is None and latest is None:
        return "—"
    return f"{day_label(earliest) if earliest else '—'} to {day_label(latest) if latest else 'later than a year'}"


class Facts:
    """What the rules of one account read, each computed once per evaluation. The balances
    and their forecast are `account_balances`: those of `balances_at`, or (None) the current
    ones every page, the banner and /api/v1/balance show."""

    def __init__(self, account: Account, now: datetime, *, balances_at: datetime | None = None) -> None:
        self.account = account
        self.now = now
        self.balances_at = balances_at
        self._budgets: dict[int, BudgetStatus] = {}

    @cached_property
    def balances(self) -> AccountBalances:
        return account_balances(self.account, at=self.balances_at)

    @property
    def forecast(self) -> AccountForecast:
        return self.balances.forecast

    @property
    def wallet(self) -> Decimal:
        return self.balances.wallet_balance

    def budget_status(self, budget: Budget) -> BudgetStatus:
        """The budget's spend at the evaluation's moment (billing.budgets.spend, its one read)."""
        if budget.pk not in self._budgets:
            self._budgets[budget.pk] = budget_spend.status(budget, now=self.now, history=0)
        return self._budgets[budget.pk]


def _token_details(facts: Facts) -> list[tuple[str, str]]:
    balances = facts.balances
    forecast = balances.forecast
    rows = [
        ("Tokens left", f"{balances.token_balance:,} of {balances.tokens_granted:,}"),
        ("Burn rate", f"{forecast.burn_rate_tokens_per_day:,} tokens/day (projected, next 7 days)"),
        ("Projected run-out", moment_label(forecast.token_run_out.at)),
        ("Likely range (p10–p90)", _range(forecast.token_run_out.earliest, forecast.token_run_out.latest)),
    ]
    for plan in balances.plans_in_effect[:DETAIL_LIMIT]:
        rows.append(
            (
                f"Plan {plan.purchase.name}",
                f"{plan.tokens_remaining:,} of {plan.purchase.tokens:,} tokens left, "
                f"expires {day_label(plan.purchase.expires_at)}",
            )
        )
    return rows


def check_token_balance(rule: AlertRule, facts: Facts) -> Check:
    total, left = facts.balances.tokens_granted, facts.balances.token_balance
    if not total:
        return quiet(rule, "Token balance: no plan in effect")
    run_out = facts.forecast.token_run_out.at
    if rule.kind == AlertKind.TOKEN_BALANCE_PERCENT:
        value = (Decimal(left) * 100 / Decimal(total)).quantize(Decimal("0.01"))
        summary = f"Token balance {_percent(value)} — {_runs_out(run_out)}"
    else:
        value = Decimal(left)
        summary = f"Token balance {left:,} tokens — {_runs_out(run_out)}"
    return measured(rule, value, summary, _token_details(facts))


def check_wallet(rule: AlertRule, facts: Facts) -> Check:
    forecast = facts.forecast
    currency = facts.account.currency
    value = facts.wallet
    details = [
        ("Wallet balance", f"{money(value)} {currency}"),
        ("Threshold", f"{money(rule.threshold)} {currency}"),
        ("Charged to the wallet", f"{money(forecast.wallet_burn_per_day)} {currency}/day (projected, next 7 days)"),
        ("Projected run-out", moment_label(forecast.wallet_run_out.at)),
        ("Likely range (p10–p90)", _range(forecast.wallet_run_out.earliest, forecast.wallet_run_out.latest)),
    ]
    summary = f"Wallet {money(value)} {currency} — {_runs_out(forecast.wallet_run_out.at)}"
    return measured(rule, value, summary, details)


def check_run_out(rule: AlertRule, facts: Facts) -> Check:
    forecast = facts.forecast
    token, wallet = forecast.token_run_out.at, forecast.wallet_run_out.at
    candidates = [(at, what) for at, what in ((token, "Token balance"), (wallet, "Wallet")) if at is not None]
    details = _token_details(facts) + [
        ("Wallet balance", f"{money(facts.wallet)} {facts.account.currency}"),
        ("Wallet run-out", moment_label(wallet)),
    ]
    if not candidates:
        return quiet(rule, "No run-out projected within a year", details)
    at, what = min(candidates)
    days = Decimal((at - facts.balances.at) / timedelta(days=1)).quantize(Decimal("0.1"))
    when = "within a day" if days < 1 else f"in {days:,} days"
    summary = f"{what} runs out around {day_label(at)} ({when})"
    return measured(rule, days, summary, details)


def check_plan_expiring(rule: AlertRule, facts: Facts) -> Check:
    balances = facts.balances
    window = balances.at + timedelta(days=rule.days or 0)
    worst: tuple[Decimal, PlanBalance, int] | None = None
    details: list[tuple[str, str]] = []
    for plan in balances.plans_in_effect:
        if plan.purchase.expires_at > window:
            continue
        unused = plan.projected_unused if plan.projected_unused is not None else plan.tokens_remaining
        share = (Decimal(unused) * 100 / Decimal(plan.purchase.tokens)).quantize(Decimal("0.01"))
        value = paid_for_tokens(unused, plan.purchase)
        details.append(
            (
                f"Plan {plan.purchase.name}",
                f"expires {moment_label(plan.purchase.expires_at)}; {plan.tokens_remaining:,} tokens left, "
                f"{unused:,} ({_percent(share)}) projected unused, paid {money(value)} {plan.purchase.currency}",
            )
        )
        if worst is None or share > worst[0]:
            worst = (share, plan, unused)
    if worst is None:
        return quiet(rule, f"No plan expires within {rule.days or 0} days", details)
    share, plan, unused = worst
    summary = (
        f"{plan.purchase.name} expires {day_label(plan.purchase.expires_at)} "
        f"with {_percent(share)} unused ({unused:,} tokens)"
    )
    return measured(rule, share, summary, details[:DETAIL_LIMIT])


def check_sync(rule: AlertRule, facts: Facts) -> Check:
    account = facts.account
    page = ("billing:plans", "billing:alerts")
    if account.provider == Provider.MANUAL:
        return quiet(rule, "Provider sync: not configured (manual balances)", page=page)
    state = SyncState.objects.filter(account=account).first()
    last = state.last_success_at if state else None
    hours = Decimal((facts.now - last) / timedelta(hours=1)).quantize(Decimal("0.1")) if last else None
    details = [
        ("Last successful sync", moment_label(last)),
        ("Consecutive failures", f"{state.consecutive_failures if state else 0:,}"),
        ("Last error", (state.last_error[:300] if state and state.last_error else "—")),
    ]
    top = len(effective_tiers(rule))  # a failing sync is as bad as it gets
    if state is not None and not state.credentials_valid:
        return measured(
            rule, hours, "Provider sync failing: the console rejected the credentials", details, page, tier=top
        )
    if state is not None and state.consecutive_failures >= 3:
        summary = f"Provider sync failing: {state.consecutive_failures} attempts in a row"
        return measured(rule, hours, summary, details, page, tier=top)
    if last is None:
        return quiet(rule, "Provider sync: no successful sync yet", details, page=page)
    return measured(rule, hours, f"Provider sync stale: last success {hours:,} hours ago", details, page)


def check_spend_spike(rule: AlertRule, facts: Facts) -> Check:
    account, now = facts.account, facts.now
    tz = dashboard_tz()
    recent = HourlyUsage.objects.filter(account=account, hour__gte=now - timedelta(hours=24), hour__lte=now)
    last_day = recent.aggregate(c=Sum("cost"))["c"] or Decimal(0)
    today = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    daily = (
        HourlyUsage.objects.filter(account=account, hour__gte=today - timedelta(days=14), hour__lt=today)
        .annotate(day=TruncDate("hour", tzinfo=tz))
        .values("day")
        .annotate(c=Sum("cost"))
    )
    totals = {row["day"]: row["c"] or Decimal(0) for row in daily}
    days = [totals.get((today - timedelta(days=i)).date(), Decimal(0)) for i in range(1, 15)]
    median = Decimal(statistics.median(days))
    currency = account.currency
    details = [
        ("Usage value in the last 24 hours", f"{money(last_day)} {currency} (price book × tokens)"),
        ("Median daily usage value, previous 14 days", f"{money(median)} {currency}"),
        ("Threshold", f"{rule.threshold:,}× the median"),
    ]
    if note := conversion_note(rates_applied(account, today - timedelta(days=14), now)):
        details.append(("Exchange rates", note))
    page = ("usage:overview",)
    if median <= 0:
        summary = f"Usage value {money(last_day)} {currency} in 24 h (no median yet)"
        return quiet(rule, summary, details, page=page)
    ratio = (last_day / median).quantize(Decimal("0.01"))
    summary = f"Usage value {money(last_day)} {currency} in 24 h — {ratio:,}× the daily median"
    return measured(rule, ratio, summary, details, page)


def check_error_surge(rule: AlertRule, facts: Facts) -> Check:
    cause = rule.error_cause or ErrorCause.INSUFFICIENT_QUOTA
    since = facts.now - timedelta(hours=1)
    # A bounded window of the request log (index on account, occurred_at).
    count = UsageRecord.objects.filter(
        account=facts.account, occurred_at__gt=since, occurred_at__lte=facts.now, error_cause=cause
    ).count()
    details = [("Errors in the last hour", f"{count:,}"), ("Threshold", f"{rule.threshold:,.0f}")]
    summary = f"{count:,} {cause} errors in the last hour"
    return measured(rule, Decimal(count), summary, details, ("usage:errors", "usage:overview"))


def check_budget(rule: AlertRule, facts: Facts) -> Check:
    budget = rule.budget
    if budget is None:
        return quiet(rule, "Budget: none attached to this rule")
    found = facts.budget_status(budget)
    return measured(rule, found.percent, budget_text.summary(found), budget_text.details(found), ("billing:budgets",))


CHECKS: dict[AlertKind, Callable[[AlertRule, Facts], Check]] = {
    AlertKind.TOKEN_BALANCE_PERCENT: check_token_balance,
    AlertKind.TOKEN_BALANCE_TOKENS: check_token_balance,
    AlertKind.WALLET_BELOW: check_wallet,
    AlertKind.RUNOUT_WITHIN: check_run_out,
    AlertKind.PLAN_EXPIRING_UNUSED: check_plan_expiring,
    AlertKind.SYNC_FAILING: check_sync,
    AlertKind.SPEND_SPIKE: check_spend_spike,
    AlertKind.ERROR_SURGE: check_error_surge,
    AlertKind.BUDGET: check_budget,
}


def check_rule(rule: AlertRule, facts: Facts) -> Check:
    return CHECKS[AlertKind(rule.kind)](rule, facts)


def tiers_label(rule: AlertRule) -> str:
    """The rule's tiers in words, least severe first: "14 / 7 / 3 / 1"."""
    return " / ".join(f"{t.normalize():,f}" for t in effective_tiers(rule))


def describe(rule: AlertRule) -> str:
    """The rule's condition in words, for the Alerts page."""
    t = rule.threshold
    currency = rule.account.currency
    number = f"{t.normalize():,f}"
    texts = {
        AlertKind.TOKEN_BALANCE_PERCENT: f"Token balance below {number}%",
        AlertKind.TOKEN_BALANCE_TOKENS: f"Token balance below {t:,.0f} tokens",
        AlertKind.WALLET_BELOW: f"Wallet below {money(t)} {currency}",
        AlertKind.RUNOUT_WITHIN: f"Projected run-out within {number} days",
        AlertKind.PLAN_EXPIRING_UNUSED: f"A plan expiring within {rule.days or 0} days with more than {number}% unused",
        AlertKind.SYNC_FAILING: f"Provider sync failing, or no success for {number} hours",
        AlertKind.SPEND_SPIKE: f"24-hour usage value above {number}× the daily median",
        AlertKind.ERROR_SURGE: f"{t:,.0f} or more {rule.error_cause or ErrorCause.INSUFFICIENT_QUOTA} errors an hour",
        AlertKind.BUDGET: f"Budget {rule.budget.name if rule.budget else ''} reaching {number}% of its amount",
    }
    return texts.get(AlertKind(rule.kind), rule.get_kind_display())
