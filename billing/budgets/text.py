"""How a budget's figures read, the same on the page, in alerts and in the proxy's refusal."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.utils.dateformat import format as date_format
from django.utils.translation import gettext as _
from django.utils.translation import override

from billing.budgets.spend import BudgetStatus
from billing.models import Budget, BudgetMeasure, BudgetScope
from usage.periods import dashboard_tz
from usage.templatetags.usage_format import money


def quantity(budget: Budget, value: Decimal) -> str:
    """ "7.50 USD" or "1,200,000 tokens"."""
    if budget.measure == BudgetMeasure.TOKENS:
        return _("%(tokens)s tokens") % {"tokens": f"{int(value):,}"}
    return f"{money(value)} {budget.account.currency}"


def day_label(moment: datetime) -> str:
    local = moment.astimezone(dashboard_tz())
    return date_format(local, _("j M"))


def scope_label(budget: Budget) -> str:
    if budget.scope == BudgetScope.TEAM:
        return _("team %(name)s") % {"name": budget.target}
    if budget.scope == BudgetScope.API_KEY:
        return _("key %(name)s") % {"name": budget.target}
    if budget.scope == BudgetScope.MODEL:
        return _("models %(pattern)s") % {"pattern": budget.target}
    return _("the whole account")


def forecast(found: BudgetStatus) -> str:
    """ "will exceed by 12 % around 24 Dec", "on track (about 61 % by the end)", "exceeded"…"""
    if found.exhausted:
        return _("exceeded")
    if found.projected is None:
        return _("period over")
    over = found.projected_over_percent
    if over is not None:
        if found.exceeds_at is not None:
            return _("will exceed by %(over)s %% around %(day)s") % {"over": over, "day": day_label(found.exceeds_at)}
        return _("will exceed by %(over)s %%") % {"over": over}
    ratio = found.projected_ratio or Decimal(0)
    return _("on track (about %(percent)s %% by the end)") % {"percent": (ratio * 100).quantize(Decimal(1))}


def resets(found: BudgetStatus) -> str:
    if found.resets_at is None:
        return _("does not reset: its range ends %(day)s") % {"day": date_format(found.window.last_day, _("j M Y"))}
    local = found.resets_at.astimezone(dashboard_tz())
    return _("resets %(day)s at %(time)s (%(zone)s)") % {
        "day": date_format(local, _("D j M Y")),
        "time": f"{local:%H:%M}",
        "zone": dashboard_tz().key,
    }


def summary(found: BudgetStatus) -> str:
    budget = found.budget
    return _("Budget %(name)s: %(percent)s %% of %(amount)s (%(spent)s in %(period)s) — %(forecast)s") % {
        "name": budget.name,
        "percent": f"{found.percent:,}",
        "amount": quantity(budget, budget.amount),
        "spent": quantity(budget, found.spent),
        "period": found.window.label(),
        "forecast": forecast(found),
    }


def details(found: BudgetStatus) -> list[tuple[str, str]]:
    budget = found.budget
    rows = [
        (
            _("Budget"),
            _("%(name)s: %(measure)s of %(scope)s")
            % {"name": budget.name, "measure": budget.get_measure_display().lower(), "scope": scope_label(budget)},
        ),
        (
            _("Spent"),
            _("%(spent)s of %(amount)s (%(percent)s %%)")
            % {
                "spent": quantity(budget, found.spent),
                "amount": quantity(budget, budget.amount),
                "percent": f"{found.percent:,}",
            },
        ),
        (_("Period"), found.window.label()),
        (_("Forecast"), forecast(found)),
        (_("Thresholds"), ", ".join(f"{t.normalize():f} %" for t in budget.threshold_values)),
        (_("Enforced at the proxy"), _("Yes") if budget.enforce else _("No")),
    ]
    if found.projected is not None:
        rows.insert(3, (_("Projected at the end"), quantity(budget, found.projected)))
    rows.append((_("Next period"), resets(found)))
    return rows


def refusal_message(found: BudgetStatus) -> str:
    """What the proxy answers a refused call with: the budget by name, and when it resets. In
    English, like every message of the API and the proxy (programs read them, whatever the
    language of the client's machine)."""
    budget = found.budget
    with override("en"):
        when = resets(found)
        return (
            f"Budget '{budget.name}' ({scope_label(budget)}) is exhausted: {quantity(budget, found.spent)} of "
            f"{quantity(budget, budget.amount)} spent in {found.window.label()}. It {when}; "
            f"until then calls are refused, or ask finance to raise it."
        )
