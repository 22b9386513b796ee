"""How a budget's figures read, the same on the page, in alerts and in the proxy's refusal."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from billing.budgets.spend import BudgetStatus
from billing.models import Budget, BudgetMeasure, BudgetScope
from usage.periods import dashboard_tz
from usage.templatetags.usage_format import money


def quantity(budget: Budget, value: Decimal) -> str:
    """ "7.50 USD" or "1,200,000 tokens"."""
    if budget.measure == BudgetMeasure.TOKENS:
        return f"{int(value):,} tokens"
    return f"{money(value)} {budget.account.currency}"


def day_label(moment: datetime) -> str:
    local = moment.astimezone(dashboard_tz())
    return f"{local.day} {local:%b}"


def scope_label(budget: Budget) -> str:
    if budget.scope == BudgetScope.TEAM:
        return f"team {budget.target}"
    if budget.scope == BudgetScope.API_KEY:
        return f"key {budget.target}"
    if budget.scope == BudgetScope.MODEL:
        return f"models {budget.target}"
    return "the whole account"


def forecast(found: BudgetStatus) -> str:
    """ "will exceed by 12 % around 24 Dec", "on track (about 61 % by the end)", "exceeded"…"""
    if found.exhausted:
        return "exceeded"
    if found.projected is None:
        return "period over"
    over = found.projected_over_percent
    if over is not None:
        around = f" around {day_label(found.exceeds_at)}" if found.exceeds_at is not None else ""
        return f"will exceed by {over} %{around}"
    ratio = found.projected_ratio or Decimal(0)
    return f"on track (about {(ratio * 100).quantize(Decimal(1))} % by the end)"


def resets(found: BudgetStatus) -> str:
    if found.resets_at is None:
        return f"does not reset: its range ends {found.window.last_day.day} {found.window.last_day:%b %Y}"
    local = found.resets_at.astimezone(dashboard_tz())
    return f"resets {local:%a} {local.day} {local:%b %Y} at {local:%H:%M} ({dashboard_tz().key})"


def summary(found: BudgetStatus) -> str:
    budget = found.budget
    return (
        f"Budget {budget.name}: {found.percent:,} % of {quantity(budget, budget.amount)} "
        f"({quantity(budget, found.spent)} in {found.window.label()}) — {forecast(found)}"
    )


def details(found: BudgetStatus) -> list[tuple[str, str]]:
    budget = found.budget
    rows = [
        ("Budget", f"{budget.name}: {budget.get_measure_display().lower()} of {scope_label(budget)}"),
        ("Spent", f"{quantity(budget, found.spent)} of {quantity(budget, budget.amount)} ({found.percent:,} %)"),
        ("Period", found.window.label()),
        ("Forecast", forecast(found)),
        ("Thresholds", ", ".join(f"{t.normalize():f} %" for t in budget.threshold_values)),
        ("Enforced at the proxy", "yes" if budget.enforce else "no"),
    ]
    if found.projected is not None:
        rows.insert(3, ("Projected at the end", quantity(budget, found.projected)))
    rows.append(("Next period", resets(found)))
    return rows


def refusal_message(found: BudgetStatus) -> str:
    """What the proxy answers a refused call with: the budget by name, and when it resets."""
    budget = found.budget
    when = resets(found)
    return (
        f"Budget '{budget.name}' ({scope_label(budget)}) is exhausted: {quantity(budget, found.spent)} of "
        f"{quantity(budget, budget.amount)} spent in {found.window.label()}. It {when}; "
        f"until then calls are refused, or ask finance to raise it."
    )
