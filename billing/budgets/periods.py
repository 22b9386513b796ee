"""The period a budget counts: a day, a week from Monday, a calendar month, or a fixed range,
in days of DASHBOARD_TIME_ZONE (the days the rollups keep)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.utils.dateformat import format as date_format
from django.utils.translation import gettext as _

from billing.models import Budget, BudgetPeriod
from usage.periods import Period, dashboard_tz


@dataclass(frozen=True)
class Window:
    """Whole days [first_day, last_day] of the dashboard's time zone."""

    first_day: date
    last_day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time.min, tzinfo=dashboard_tz())

    @property
    def end(self) -> datetime:
        """The moment the window ends (exclusive): when a recurring budget resets."""
        return datetime.combine(self.last_day + timedelta(days=1), time.min, tzinfo=dashboard_tz())

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    def as_period(self) -> Period:
        return Period("custom", self.first_day, self.last_day)

    def label(self) -> str:
        if self.first_day == self.last_day:
            return date_format(self.first_day, _("D j M Y"))
        if self.first_day.day == 1 and self.last_day == _month_end(self.first_day):
            return date_format(self.first_day, _("F Y"))
        return f"{date_format(self.first_day, _('j M'))} – {date_format(self.last_day, _('j M Y'))}"


def _month_end(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def window_containing(budget: Budget, day: date) -> Window:
    """The budget's period that contains `day` (a fixed range is always its own range)."""
    if budget.period == BudgetPeriod.RANGE:
        first = budget.starts_on or day
        return Window(first, max(first, budget.ends_on or first))
    if budget.period == BudgetPeriod.DAY:
        return Window(day, day)
    if budget.period == BudgetPeriod.WEEK:
        monday = day - timedelta(days=day.weekday())
        return Window(monday, monday + timedelta(days=6))
    first = day.replace(day=1)
    return Window(first, _month_end(first))


def current_window(budget: Budget, now: datetime) -> Window:
    return window_containing(budget, now.astimezone(dashboard_tz()).date())


def previous_windows(budget: Budget, window: Window, count: int) -> list[Window]:
    """The `count` periods before `window`, the latest first (none for a fixed range)."""
    if budget.period == BudgetPeriod.RANGE:
        return []
    found: list[Window] = []
    current = window
    for _step in range(count):
        current = window_containing(budget, current.first_day - timedelta(days=1))
        found.append(current)
    return found


def recurs(budget: Budget) -> bool:
    return budget.period != BudgetPeriod.RANGE
