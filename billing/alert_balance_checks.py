"""The alert checks of balances: token balance, wallet, projected run-out and plans expiring
with tokens unused, each from `billing.balances.account_balances` (the one definition every
page, banner and API shows)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.alert_facts import (
    DETAIL_LIMIT,
    Check,
    Facts,
    Row,
    day_label,
    measured,
    moment_label,
    percent_text,
    quiet,
    run_out_label,
    run_out_range,
    runs_out,
)
from billing.alert_texts import later
from billing.balances import PlanBalance
from billing.models import AlertKind, AlertRule
from billing.paid import paid_for_tokens
from usage.templatetags.usage_format import money

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise
else:
    StrOrPromise = str


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
        "share": percent_text(share),
        "amount": money(value),
        "currency": plan.purchase.currency,
    }


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
        (gettext_lazy("Projected run-out"), later(lambda: run_out_label(token_run_out))),
        (gettext_lazy("Likely range (p10–p90)"), later(lambda: run_out_range(token_run_out))),
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
    run_out = facts.forecast.token_run_out
    if rule.kind == AlertKind.TOKEN_BALANCE_PERCENT:
        value = (Decimal(left) * 100 / Decimal(total)).quantize(Decimal("0.01"))
        percent = percent_text(value)
        summary = later(
            lambda: _("Token balance %(percent)s — %(runs_out)s") % {"percent": percent, "runs_out": runs_out(run_out)}
        )
    else:
        value = Decimal(left)
        summary = later(
            lambda: (
                _("Token balance %(tokens)s tokens — %(runs_out)s")
                % {"tokens": f"{left:,}", "runs_out": runs_out(run_out)}
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
        (gettext_lazy("Projected run-out"), later(lambda: run_out_label(run_out))),
        (gettext_lazy("Likely range (p10–p90)"), later(lambda: run_out_range(run_out))),
    ]
    summary = later(
        lambda: (
            _("Wallet %(amount)s %(currency)s — %(runs_out)s")
            % {"amount": money(value), "currency": currency, "runs_out": runs_out(run_out)}
        )
    )
    return measured(rule, value, summary, details)


def check_run_out(rule: AlertRule, facts: Facts) -> Check:
    forecast = facts.forecast
    token, wallet = forecast.token_run_out, forecast.wallet_run_out
    # An already run-out balance comes first (at its moment, `now`, it ties with a run-out due now).
    candidates = [
        (not run_out.already, run_out.at, what)
        for run_out, what in ((token, "token"), (wallet, "wallet"))
        if run_out.at is not None
    ]
    details = _token_details(facts) + [
        (gettext_lazy("Wallet balance"), f"{money(facts.wallet)} {facts.account.currency}"),
        (gettext_lazy("Wallet run-out"), later(lambda: run_out_label(wallet))),
    ]
    if not candidates:
        return quiet(rule, gettext_lazy("No run-out projected within a year"), details)
    pending, at, what = min(candidates)
    days = Decimal(max((at - facts.balances.at) / timedelta(days=1), 0)).quantize(Decimal("0.1"))

    def words() -> str:
        if not pending:
            if what == "token":
                return _("Token balance has already run out (at or below zero)")
            return _("Wallet has already run out (at or below zero)")
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
                "share": percent_text(share),
                "unused": f"{unused:,}",
            }
        )
    )
    return measured(rule, share, summary, details[:DETAIL_LIMIT])
