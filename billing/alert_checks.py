"""What each alert rule says now: its figure, its severity tier, the subject and the numbers.

A rule has **tiers**, least severe first (run-out within 14 / 7 / 3 / 1 days; token balance
below 20 / 10 / 0 %; a budget at 50 / 80 / 100 %). `check_rule` measures the rule's figure
and says which tier it is in (0: not firing); `billing.alert_episodes` turns the changes of
tier into notifications. Every balance is read from `billing.balances.account_balances`,
the one definition every page, banner and API shows. The checks of balances live in
`billing.alert_balance_checks`, what every check shares (`Check`, `Facts`) in
`billing.alert_facts`; here are the checks of activity (sync, spend, errors, budgets) and
the one table of which check answers which kind of rule.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING

from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.alert_balance_checks import check_plan_expiring, check_run_out, check_token_balance, check_wallet
from billing.alert_facts import (
    Check,
    Facts,
    Row,
    measured,
    moment_label,
    quiet,
)
from billing.alert_texts import later
from billing.alert_tiers import effective_tiers
from billing.budgets import spend as budget_spend
from billing.budgets import text as budget_text
from billing.budgets.spend import BudgetStatus
from billing.models import AlertKind, AlertRule, SyncState
from usage.exchange import conversion_note, rates_applied
from usage.models import ErrorCause, HourlyUsage, Provider, UsageRecord
from usage.periods import dashboard_tz
from usage.templatetags.usage_format import money

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise
else:
    StrOrPromise = str


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


def _budget_cell(found: BudgetStatus, row: int, column: int) -> str:
    return str(budget_text.details(found)[row][column])


def check_budget(rule: AlertRule, facts: Facts) -> Check:
    budget = rule.budget
    if budget is None:
        return quiet(rule, gettext_lazy("Budget: none attached to this rule"))
    if budget_spend.names_nothing(budget):
        return quiet(
            rule, gettext_lazy("Budget: it names no team or key of the account, so its spend cannot be counted")
        )
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
