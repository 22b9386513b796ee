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
from functools import cached_property, partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils.dateformat import format as date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.alert_texts import later
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

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise
else:
    StrOrPromise = str

DETAIL_LIMIT = 12
Row = tuple["StrOrPromise", "StrOrPromise"]  # a label and its value, worded when read


@dataclass(frozen=True)
class Check:
    """The outcome of one rule: its tier (0: not firing), the figure, the subject line, the numbers."""

    tier: int
    value: Decimal | None
    summary: StrOrPromise  # worded when read (billing.alert_texts)
    details: list[Row] = field(default_factory=list)
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
    summary: StrOrPromise,
    details: list[Row] | None = None,
    page: tuple[str, ...] | None = None,
    *,
    tier: int | None = None,
) -> Check:
    """The Check of a figure: its tier is worked out from the rule's tiers unless given."""
    tiers = tuple(effective_tiers(rule))
    found = tier_of(rule, value, tiers) if tier is None else tier
    extra = {"page": page} if page is not None else {}
    return Check(found, value, summary, details or [], tiers=tiers, **extra)


def quiet(rule: AlertRule, summary: StrOrPromise, details: list[Row] | None = None, **page: tuple[str, ...]) -> Check:
    """A rule that has nothing to measure now: it does not fire."""
    return measured(rule, None, summary, details, page.get("page"), tier=0)


def day_label(moment: datetime) -> str:
    """ "Fri 27 Nov" (11月27日 周五) in the dashboard's time zone and the active language."""
    local = moment.astimezone(dashboard_tz())
    return date_format(local, _("D j M"))


def moment_label(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    local = moment.astimezone(dashboard_tz())
    return f"{date_format(local, _('D j M Y, H:i'))} ({settings.DASHBOARD_TIME_ZONE})"


def _percent(value: Decimal | float) -> str:
    """52.5 → "53%", 8.04 → "8.0%": whole percents once there are two digits (rounded half up)."""
    number = Decimal(value)
    places = Decimal(1) if abs(number) >= 10 else Decimal("0.1")
    return f"{number.quantize(places, rounding=ROUND_HALF_UP):,}%"


def _runs_out(moment: datetime | None, earliest: datetime | None = None, latest: datetime | None = None) -> str:
    if moment is None:
        return _("no run-out projected within a year")
    return _("runs out around %(day)s") % {"day": day_label(moment)}


def _range(earliest: datetime | None, latest: datetime | None) -> str:
    if earliest is None and latest is None:
        return "—"
    return _("%(earliest)s to %(latest)s") % {
        "earliest": day_label(earliest) if earliest else "—",
        "latest": day_label(latest) if latest else _("later than a year"),
    }


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


def _plan_label(plan: PlanBalance) -> str:
    return _("Plan %(name)s") % {"name": plan.purchase.name}


def _plan_left(plan: PlanBalance) -> str:
    return _("%(left)s of %(tokens)s tokens left, expires %(day)s") % {
        "left": f"{plan.tokens_remaining:,}",
        "tokens": f"{plan.purchase.tokens:,}",
        "day": day_label(plan.purchase.expires_at),
    }


def _plan_unused(plan: PlanBalance, unused: int, share: Decimal, value: Decimal) -> str:
    return _(
        "expires %(when)s; %(left)s tokens left, %(unused)s (%(share)s) projected unused, paid %(amount)s %(currency)s"
    ) % {
        "when": moment_label(plan.purchase.expires_at),
        "left": f"{plan.tokens_remaining:,}",
        "unused": f"{unused:,}",
        "share": _percent(share),
        "amount": money(value),
        "currency": plan.purchase.currency,
    }


def _budget_cell(found: BudgetStatus, row: int, column: int) -> str:
    return str(budget_text.details(found)[row][column])


def _token_details(facts: Facts) -> list[Row]:
    balances = facts.balances
    forecast = balances.forecast
    token_run_out = forecast.token_run_out
    rows: list[Row] = [
        (
            gettext_lazy("Tokens left"),
            later(
                lambda: (
                    _("%(left)s of %(granted)s")
                    % {"left": f"{balances.token_balance:,}", "granted": f"{balances.tokens_granted:,}"}
                )
            ),
        ),
        (
            gettext_lazy("Burn rate"),
            later(
                lambda: (
                    _("%(rate)s tokens/day (projected, next 7 days)")
                    % {"rate": f"{forecast.burn_rate_tokens_per_day:,}"}
                )
            ),
        ),
        (gettext_lazy("Projected run-out"), later(lambda: moment_label(token_run_out.at))),
        (gettext_lazy("Likely range (p10–p90)"), later(lambda: _range(token_run_out.earliest, token_run_out.latest))),
    ]
    for plan in balances.plans_in_effect[:DETAIL_LIMIT]:
        rows.append(
            (
                later(partial(_plan_label, plan)),
                later(partial(_plan_left, plan)),
            )
        )
    return rows


def check_token_balance(rule: AlertRule, facts: Facts) -> Check:
    total, left = facts.balances.tokens_granted, facts.balances.token_balance
    if not total:
        return quiet(rule, gettext_lazy("Token balance: no plan in effect"))
    run_out = facts.forecast.token_run_out.at
    if rule.kind == AlertKind.TOKEN_BALANCE_PERCENT:
        value = (Decimal(left) * 100 / Decimal(total)).quantize(Decimal("0.01"))
        percent = _percent(value)
        summary = later(
            lambda: _("Token balance %(percent)s — %(runs_out)s") % {"percent": percent, "runs_out": _runs_out(run_out)}
        )
    else:
        value = Decimal(left)
        summary = later(
            lambda: (
                _("Token balance %(tokens)s tokens — %(runs_out)s")
                % {"tokens": f"{left:,}", "runs_out": _runs_out(run_out)}
            )
        )
    return measured(rule, value, summary, _token_details(facts))


def check_wallet(rule: AlertRule, facts: Facts) -> Check:
    forecast = facts.forecast
    currency = facts.account.currency
    value = facts.wallet
    run_out = forecast.wallet_run_out
    details: list[Row] = [
        (gettext_lazy("Wallet balance"), f"{money(value)} {currency}"),
        (gettext_lazy("Threshold"), f"{money(rule.threshold)} {currency}"),
        (
            gettext_lazy("Charged to the wallet"),
            later(
                lambda: (
                    _("%(amount)s %(currency)s/day (projected, next 7 days)")
                    % {"amount": money(forecast.wallet_burn_per_day), "currency": currency}
                )
            ),
        ),
        (gettext_lazy("Projected run-out"), later(lambda: moment_label(run_out.at))),
        (gettext_lazy("Likely range (p10–p90)"), later(lambda: _range(run_out.earliest, run_out.latest))),
    ]
    summary = later(
        lambda: (
            _("Wallet %(amount)s %(currency)s — %(runs_out)s")
            % {"amount": money(value), "currency": currency, "runs_out": _runs_out(run_out.at)}
        )
    )
    return measured(rule, value, summary, details)


def check_run_out(rule: AlertRule, facts: Facts) -> Check:
    forecast = facts.forecast
    token, wallet = forecast.token_run_out.at, forecast.wallet_run_out.at
    candidates = [(at, what) for at, what in ((token, "token"), (wallet, "wallet")) if at is not None]
    details = _token_details(facts) + [
        (gettext_lazy("Wallet balance"), f"{money(facts.wallet)} {facts.account.currency}"),
        (gettext_lazy("Wallet run-out"), later(lambda: moment_label(wallet))),
    ]
    if not candidates:
        return quiet(rule, gettext_lazy("No run-out projected within a year"), details)
    at, what = min(candidates)
    days = Decimal((at - facts.balances.at) / timedelta(days=1)).quantize(Decimal("0.1"))

    def words() -> str:
        when = _("within a day") if days < 1 else _("in %(days)s days") % {"days": f"{days:,}"}
        if what == "token":
            return _("Token balance runs out around %(day)s (%(when)s)") % {"day": day_label(at), "when": when}
        return _("Wallet runs out around %(day)s (%(when)s)") % {"day": day_label(at), "when": when}

    summary = later(words)
    return measured(rule, days, summary, details)


def check_plan_expiring(rule: AlertRule, facts: Facts) -> Check:
    balances = facts.balances
    window = balances.at + timedelta(days=rule.days or 0)
    worst: tuple[Decimal, PlanBalance, int] | None = None
    details: list[Row] = []
    for plan in balances.plans_in_effect:
        if plan.purchase.expires_at > window:
            continue
        unused = plan.projected_unused if plan.projected_unused is not None else plan.tokens_remaining
        share = (Decimal(unused) * 100 / Decimal(plan.purchase.tokens)).quantize(Decimal("0.01"))
        value = paid_for_tokens(unused, plan.purchase)
        details.append(
            (
                later(partial(_plan_label, plan)),
                later(partial(_plan_unused, plan, unused, share, value)),
            )
        )
        if worst is None or share > worst[0]:
            worst = (share, plan, unused)
    if worst is None:
        days = rule.days or 0
        return quiet(rule, later(lambda: _("No plan expires within %(days)s days") % {"days": days}), details)
    share, plan, unused = worst
    summary = later(
        lambda: (
            _("%(plan)s expires %(day)s with %(share)s unused (%(unused)s tokens)")
            % {
                "plan": plan.purchase.name,
                "day": day_label(plan.purchase.expires_at),
                "share": _percent(share),
                "unused": f"{unused:,}",
            }
        )
    )
    return measured(rule, share, summary, details[:DETAIL_LIMIT])


def check_sync(rule: AlertRule, facts: Facts) -> Check:
    account = facts.account
    page = ("billing:plans", "billing:alerts")
    if account.provider == Provider.MANUAL:
        return quiet(rule, gettext_lazy("Provider sync: not configured (manual balances)"), page=page)
    state = SyncState.objects.filter(account=account).first()
    last = state.last_success_at if state else None
    hours = Decimal((facts.now - last) / timedelta(hours=1)).quantize(Decimal("0.1")) if last else None
    details: list[Row] = [
        (gettext_lazy("Last successful sync"), later(lambda: moment_label(last))),
        (gettext_lazy("Consecutive failures"), f"{state.consecutive_failures if state else 0:,}"),
        (gettext_lazy("Last error"), (state.last_error[:300] if state and state.last_error else "—")),
    ]
    top = len(effective_tiers(rule))  # a failing sync is as bad as it gets
    if state is not None and not state.credentials_valid:
        summary: StrOrPromise = gettext_lazy("Provider sync failing: the console rejected the credentials")
        return measured(rule, hours, summary, details, page, tier=top)
    if state is not None and state.consecutive_failures >= 3:
        failures = state.consecutive_failures
        summary = later(lambda: _("Provider sync failing: %(count)s attempts in a row") % {"count": failures})
        return measured(rule, hours, summary, details, page, tier=top)
    if last is None:
        return quiet(rule, gettext_lazy("Provider sync: no successful sync yet"), details, page=page)
    summary = later(lambda: _("Provider sync stale: last success %(hours)s hours ago") % {"hours": f"{hours:,}"})
    return measured(rule, hours, summary, details, page)


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
    threshold = rule.threshold
    details: list[Row] = [
        (
            gettext_lazy("Usage value in the last 24 hours"),
            later(
                lambda: (
                    _("%(amount)s %(currency)s (price book × tokens)")
                    % {"amount": money(last_day), "currency": currency}
                )
            ),
        ),
        (gettext_lazy("Median daily usage value, previous 14 days"), f"{money(median)} {currency}"),
        (gettext_lazy("Threshold"), later(lambda: _("%(ratio)s× the median") % {"ratio": f"{threshold:,}"})),
    ]
    rates = rates_applied(account, today - timedelta(days=14), now)
    if conversion_note(rates):
        details.append((gettext_lazy("Exchange rates"), later(lambda: conversion_note(rates))))
    page = ("usage:overview",)
    if median <= 0:
        summary = later(
            lambda: (
                _("Usage value %(amount)s %(currency)s in 24 h (no median yet)")
                % {"amount": money(last_day), "currency": currency}
            )
        )
        return quiet(rule, summary, details, page=page)
    ratio = (last_day / median).quantize(Decimal("0.01"))
    summary = later(
        lambda: (
            _("Usage value %(amount)s %(currency)s in 24 h — %(ratio)s× the daily median")
            % {"amount": money(last_day), "currency": currency, "ratio": f"{ratio:,}"}
        )
    )
    return measured(rule, ratio, summary, details, page)


def check_error_surge(rule: AlertRule, facts: Facts) -> Check:
    cause = rule.error_cause or ErrorCause.INSUFFICIENT_QUOTA
    since = facts.now - timedelta(hours=1)
    # A bounded window of the request log (index on account, occurred_at).
    count = UsageRecord.objects.filter(
        account=facts.account, occurred_at__gt=since, occurred_at__lte=facts.now, error_cause=cause
    ).count()
    details: list[Row] = [
        (gettext_lazy("Errors in the last hour"), f"{count:,}"),
        (gettext_lazy("Threshold"), f"{rule.threshold:,.0f}"),
    ]
    summary = later(lambda: _("%(count)s %(cause)s errors in the last hour") % {"count": f"{count:,}", "cause": cause})
    return measured(rule, Decimal(count), summary, details, ("usage:errors", "usage:overview"))


def check_budget(rule: AlertRule, facts: Facts) -> Check:
    budget = rule.budget
    if budget is None:
        return quiet(rule, gettext_lazy("Budget: none attached to this rule"))
    found = facts.budget_status(budget)
    summary = later(lambda: budget_text.summary(found))
    details: list[Row] = [
        (later(partial(_budget_cell, found, i, 0)), later(partial(_budget_cell, found, i, 1)))
        for i in range(len(budget_text.details(found)))
    ]
    return measured(rule, found.percent, summary, details, ("billing:budgets",))


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
        AlertKind.TOKEN_BALANCE_PERCENT: _("Token balance below %(number)s%%") % {"number": number},
        AlertKind.TOKEN_BALANCE_TOKENS: _("Token balance below %(tokens)s tokens") % {"tokens": f"{t:,.0f}"},
        AlertKind.WALLET_BELOW: _("Wallet below %(amount)s %(currency)s") % {"amount": money(t), "currency": currency},
        AlertKind.RUNOUT_WITHIN: _("Projected run-out within %(number)s days") % {"number": number},
        AlertKind.PLAN_EXPIRING_UNUSED: _("A plan expiring within %(days)s days with more than %(number)s%% unused")
        % {"days": rule.days or 0, "number": number},
        AlertKind.SYNC_FAILING: _("Provider sync failing, or no success for %(number)s hours") % {"number": number},
        AlertKind.SPEND_SPIKE: _("24-hour usage value above %(number)s× the daily median") % {"number": number},
        AlertKind.ERROR_SURGE: _("%(count)s or more %(cause)s errors an hour")
        % {"count": f"{t:,.0f}", "cause": rule.error_cause or ErrorCause.INSUFFICIENT_QUOTA},
        AlertKind.BUDGET: _("Budget %(name)s reaching %(number)s%% of its amount")
        % {"name": rule.budget.name if rule.budget else "", "number": number},
    }
    return texts.get(AlertKind(rule.kind), rule.get_kind_display())
