"""The alert checks of balances: token balance, wallet, projected run-out and plans expiring
with tokens unused, each from `billing.balances.account_balances` (the one definition every
page, banner and API shows)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
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
from billing.alert_texts import later, rule_name
from billing.alert_tiers import TOKEN_KINDS
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


# The rules that tell of each balance once it has run out, and how each is checked.
_TOLD_BY: dict[str, tuple[tuple[str, ...], Callable[[AlertRule, Facts], Check]]] = {
    "token": (TOKEN_KINDS, check_token_balance),
    "wallet": ((AlertKind.WALLET_BELOW,), check_wallet),
}


def _told_by(facts: Facts, what: str) -> AlertRule | None:
    """The enabled rule of the account that fires about the `what` balance ("token" or
    "wallet") now: it tells of that balance having run out, so the run-out rule need not."""
    kinds, check = _TOLD_BY[what]
    for other in facts.enabled_rules:
        if other.kind in kinds and check(other, facts).firing:
            return other
    return None


def _handed_over_words(told: dict[str, AlertRule]) -> str:
    words = {
        "token": _("Token balance has already run out: the rule “%(rule)s” tells of it"),
        "wallet": _("Wallet has already run out: the rule “%(rule)s” tells of it"),
    }
    return "; ".join(words[what] % {"rule": rule_name(other)} for what, other in told.items())


def check_run_out(rule: AlertRule, facts: Facts) -> Check:
    """The run-out rule warns before a balance runs out. A balance that has already run out is
    the business of the rule for that balance (wallet below zero, token balance low) when one
    is enabled and firing: the run-out rule then leaves it to that rule, so one state is told
    once; without such a rule it tells of it itself, so nobody goes untold."""
    forecast = facts.forecast
    token, wallet = forecast.token_run_out, forecast.wallet_run_out
    told: dict[str, AlertRule] = {}
    for run_out, what in ((token, "token"), (wallet, "wallet")):
        if run_out.already and (other := _told_by(facts, what)) is not None:
            told[what] = other
    # An already run-out balance comes first (at its moment, `now`, it ties with a run-out due now).
    candidates = [
        (not run_out.already, run_out.at, what)
        for run_out, what in ((token, "token"), (wallet, "wallet"))
        if run_out.at is not None and what not in told
    ]
    details = _token_details(facts) + [
        (gettext_lazy("Wallet balance"), f"{money(facts.wallet)} {facts.account.currency}"),
        (gettext_lazy("Wallet run-out"), later(lambda: run_out_label(wallet))),
    ]
    if candidates:
        check = _run_out_check(rule, facts, details, *min(candidates))
    elif told:
        check = quiet(rule, later(lambda: _handed_over_words(told)), details)
    else:
        check = quiet(rule, gettext_lazy("No run-out projected within a year"), details)
    return replace(check, handed_over=tuple(told))


def _run_out_check(rule: AlertRule, facts: Facts, details: list[Row], pending: bool, at: datetime, what: str) -> Check:
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

    return replace(measured(rule, days, later(words), details), balance=what)


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
