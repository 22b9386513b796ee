"""What a budget has spent, read from the rollups (never the raw records).

`status(budget)` is the one read behind the Budgets page, `/api/v1/budgets`, the budget's
alert rule, the proxy's enforcement state and `/metrics`. One grouped query per budget gives
its spend per day over the current period, the periods before it (history) and the last
week (the forecast's rate):

- **tokens** and **usage value** come from the usage rollup (`usage.selectors.rollup_rows`:
  prompt + completion tokens, and `cost`, which leaves unpriced requests out);
- **paid** comes from the paid rollup (`DailyPaid`: plan tokens at each purchase's rate plus
  wallet charges, in the account's currency), or, while that rollup is being rebuilt, from
  the period's allocations (slower, same figures).

The forecast is a run rate: the spend of the last 7 days (today so far included) per day,
carried to the end of the period.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fnmatch import fnmatchcase

from django.db.models import F, QuerySet, Sum
from django.utils import timezone

from billing.budgets.periods import Window, current_window, previous_windows, recurs
from billing.models import Budget, BudgetMeasure, BudgetScope, DailyPaid
from billing.paid import Ledger, rollup_is_current, stored_shares
from usage.models import ApiKey, Team
from usage.periods import Period, dashboard_tz
from usage.selectors import rollup_rows

ZERO = Decimal(0)
HISTORY_PERIODS = 6
RATE_DAYS = 7
RATIO_QUANTUM = Decimal("0.0001")


def _matching_models(rows: QuerySet, pattern: str) -> list[str]:
    models = rows.values_list("model", flat=True).distinct().order_by()
    return [model for model in models if model == pattern or fnmatchcase(model, pattern)]


def _scoped(budget: Budget, rows: QuerySet, *, key_field: str = "api_key__name") -> QuerySet:
    if budget.scope == BudgetScope.TEAM:
        return rows.filter(team=budget.target)
    if budget.scope == BudgetScope.API_KEY:
        return rows.filter(**{key_field: budget.target})
    if budget.scope == BudgetScope.MODEL:
        return rows.filter(model__in=_matching_models(rows, budget.target))
    return rows


def _usage_by_day(budget: Budget, period: Period) -> dict[date, Decimal]:
    rows = _scoped(budget, rollup_rows(budget.account, period))
    figure = F("prompt_tokens") + F("completion_tokens") if budget.measure == BudgetMeasure.TOKENS else F("cost")
    grouped = rows.values("day").annotate(spent=Sum(figure)).order_by()
    return {row["day"]: Decimal(row["spent"] or 0) for row in grouped}


def _paid_by_day(budget: Budget, period: Period) -> dict[date, Decimal]:
    account = budget.account
    if rollup_is_current(account):
        rows = DailyPaid.objects.filter(
            account=account, currency=account.currency, day__gte=period.first_day, day__lte=period.last_day
        )
        grouped = _scoped(budget, rows).values("day").annotate(spent=Sum(F("plan_paid") + F("wallet_paid"))).order_by()
        return {row["day"]: row["spent"] or ZERO for row in grouped}
    ledger = Ledger(account)  # the rollup is being rebuilt: the period's allocations say the same
    ledger.add(stored_shares(account, start=period.start, end=period.end))
    names: dict[int | None, str] = dict(account.api_keys.values_list("pk", "name"))
    found: dict[date, Decimal] = defaultdict(Decimal)
    for group, figures in ledger.groups.items():
        if group.currency != account.currency or not _in_scope(
            budget, group.model, names.get(group.api_key_id), group.team
        ):
            continue
        found[group.day] += figures.plan_paid + figures.wallet_paid
    return dict(found)


def _in_scope(budget: Budget, model: str, key_name: str | None, team: str) -> bool:
    if budget.scope == BudgetScope.TEAM:
        return team == budget.target
    if budget.scope == BudgetScope.API_KEY:
        return key_name == budget.target
    if budget.scope == BudgetScope.MODEL:
        return model == budget.target or fnmatchcase(model, budget.target)
    return True


def spend_by_day(budget: Budget, first_day: date, last_day: date) -> dict[date, Decimal]:
    """The budget's measure per day of the dashboard's time zone, days without spend left out."""
    period = Period("custom", first_day, last_day)
    if budget.measure == BudgetMeasure.PAID:
        return _paid_by_day(budget, period)
    return _usage_by_day(budget, period)


@dataclass(frozen=True)
class PastPeriod:
    window: Window
    spent: Decimal
    ratio: Decimal


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    window: Window
    at: datetime
    spent: Decimal
    projected: Decimal | None  # at the end of the period; None when the period is over
    exceeds_at: datetime | None  # when the run rate crosses the amount, if it does before the end
    history: tuple[PastPeriod, ...] = ()

    @property
    def ratio(self) -> Decimal:
        return self.spent / self.budget.amount

    @property
    def percent(self) -> Decimal:
        return (self.ratio * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget.amount

    @property
    def state(self) -> str:
        """ "exceeded" (spent the amount), "warning" (past the lowest threshold) or "ok"."""
        if self.exhausted:
            return "exceeded"
        if self.ratio * 100 >= min(self.budget.threshold_values):
            return "warning"
        return "ok"

    @property
    def projected_ratio(self) -> Decimal | None:
        return None if self.projected is None else self.projected / self.budget.amount

    @property
    def projected_over_percent(self) -> Decimal | None:
        """By how much the forecast exceeds the amount (12 for 112 %), None when it does not."""
        ratio = self.projected_ratio
        if ratio is None or ratio <= 1:
            return None
        return ((ratio - 1) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)

    @property
    def resets_at(self) -> datetime | None:
        return self.window.end if recurs(self.budget) else None

    @property
    def bar_percent(self) -> int:
        """The progress bar's width, 0–100."""
        return int(min(max(self.ratio * 100, ZERO), Decimal(100)))


def names_nothing(budget: Budget) -> bool:
    """A team or key budget naming no team or key the account has (one made before targets
    were checked): what it spends cannot be counted, which is not the same as nothing spent."""
    if budget.scope == BudgetScope.TEAM:
        return not Team.objects.filter(account_id=budget.account_id, name=budget.target).exists()
    if budget.scope == BudgetScope.API_KEY:
        return not ApiKey.objects.filter(account_id=budget.account_id, name=budget.target).exists()
    return False


def status(budget: Budget, *, now: datetime | None = None, history: int = HISTORY_PERIODS) -> BudgetStatus:
    """Spent so far in the period containing `now`, the forecast to its end and past periods."""
    now = now or timezone.now()
    window = current_window(budget, now)
    past = previous_windows(budget, window, history)
    today = now.astimezone(dashboard_tz()).date()
    first = min([window.first_day, today - timedelta(days=RATE_DAYS - 1), *(w.first_day for w in past)])
    days = spend_by_day(budget, first, max(window.last_day, today))
    spent = sum((v for d, v in days.items() if window.first_day <= d <= window.last_day), ZERO)
    projected, exceeds_at = _forecast(budget, window, now, days, spent)
    amount = budget.amount
    return BudgetStatus(
        budget=budget,
        window=window,
        at=now,
        spent=spent,
        projected=projected,
        exceeds_at=exceeds_at,
        history=tuple(
            PastPeriod(w, total, total / amount)
            for w in past
            for total in [sum((v for d, v in days.items() if w.first_day <= d <= w.last_day), ZERO)]
        ),
    )


def _forecast(
    budget: Budget, window: Window, now: datetime, days: dict[date, Decimal], spent: Decimal
) -> tuple[Decimal | None, datetime | None]:
    if now >= window.end:
        return None, None
    if now < window.start:
        return spent, None
    tz = dashboard_tz()
    today = now.astimezone(tz).date()
    since = datetime.combine(today - timedelta(days=RATE_DAYS - 1), datetime.min.time(), tzinfo=tz)
    elapsed_days = Decimal((now - since) / timedelta(days=1))
    recent = sum((v for d, v in days.items() if d >= since.date()), ZERO)
    rate = recent / elapsed_days if elapsed_days > 0 else ZERO
    remaining = Decimal((window.end - now) / timedelta(days=1))
    projected = spent + rate * remaining
    exceeds_at = None
    if rate > 0 and spent < budget.amount < projected:
        exceeds_at = now + timedelta(days=float((budget.amount - spent) / rate))
    return projected, exceeds_at
