"""The period picker: a half-open [start, end) range of whole days in DASHBOARD_TIME_ZONE."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.conf import settings
from django.http import QueryDict
from django.utils import formats, timezone
from django.utils.dateformat import format as date_format
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

PRESETS: dict[str, str | Promise] = {
    "today": gettext_lazy("Today"),
    "7d": gettext_lazy("Last 7 days"),
    "30d": gettext_lazy("Last 30 days"),
    "this_month": gettext_lazy("This month"),
    "last_month": gettext_lazy("Last month"),
    "custom": gettext_lazy("Custom"),
}
DEFAULT_PRESET = "30d"
MAX_DAYS = 731
# The days a period may cover: no usage is older than 2000 (ingestion refuses it), and every
# day computed from a period (the previous one, the day after its end) stays in the calendar.
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(9998, 12, 31)


def supported_day(day: date) -> date:
    """`day`, or a ValueError when a period cannot start or end on it."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}")
    return day


def _month_end(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def dashboard_tz() -> ZoneInfo:
    return ZoneInfo(settings.DASHBOARD_TIME_ZONE)


@dataclass(frozen=True)
class Period:
    preset: str
    first_day: date
    last_day: date  # inclusive

    @property
    def tz(self) -> ZoneInfo:
        return dashboard_tz()

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time.min, tzinfo=self.tz)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last_day + timedelta(days=1), time.min, tzinfo=self.tz)

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def label(self) -> str:
        if self.preset != "custom":
            return str(PRESETS[self.preset])
        day_format = _("d M Y")
        return f"{date_format(self.first_day, day_format)} – {date_format(self.last_day, day_format)}"

    @property
    def whole_month(self) -> bool:
        """From the first to the last day of one calendar month."""
        return self.first_day.day == 1 and self.last_day == _month_end(self.first_day)

    def previous(self) -> Period:
        """What this period is compared with: month to date, the same days of the previous
        month (up to its end); a whole month, the whole previous month; otherwise the
        period of the same length just before."""
        if self.preset == "this_month" or self.whole_month:
            first = (self.first_day - timedelta(days=1)).replace(day=1)
            last = (
                _month_end(first)
                if self.whole_month
                else min(_month_end(first), first + (self.last_day - self.first_day))
            )
            return Period("custom", first, last)
        last = self.first_day - timedelta(days=1)
        return Period("custom", last - timedelta(days=self.days - 1), last)

    @property
    def comparison_label(self) -> str:
        """What `previous()` is, in words: "the same days of November (1–4 Nov 2026)"."""
        previous = self.previous()
        # Month names in the active language (Django's date formats), as the rest of the page.
        first_format = _("j M Y") if previous.first_day.year != previous.last_day.year else _("j M")
        last_format = _("j M Y")
        days = f"{date_format(previous.first_day, first_format)} – {date_format(previous.last_day, last_format)}"
        if self.whole_month:
            return formats.date_format(previous.first_day, "YEAR_MONTH_FORMAT")
        if self.preset == "this_month":
            return _("the same days of %(month)s (%(days)s)") % {
                "month": date_format(previous.first_day, "F"),
                "days": days,
            }
        return ngettext(
            "the previous %(count)d day (%(days)s)", "the previous %(count)d days (%(days)s)", previous.days
        ) % {"count": previous.days, "days": days}

    @property
    def query_string(self) -> str:
        """The period as URL query parameters, for links and fragment URLs that keep it."""
        return urlencode(self.as_query())

    def as_query(self) -> dict[str, str]:
        if self.preset == "custom":
            return {"period": "custom", "start": self.first_day.isoformat(), "end": self.last_day.isoformat()}
        return {"period": self.preset}

    @classmethod
    def read(cls, query: QueryDict | dict[str, str], *, today: date | None = None) -> tuple[Period, str]:
        """The period a page shows for ?period=…[&start=&end=], and, when part of the query could
        not be understood, the notice saying what is shown instead ("" otherwise). Every page
        with a period reads it here."""
        period = cls.from_query(query, today=today)
        preset = query.get("period") or ""
        if preset and preset not in PRESETS:
            return period, _("Unknown period “%(preset)s”: showing %(period)s.") % {
                "preset": preset,
                "period": period.label.lower(),
            }
        if preset == "custom" and period.preset != "custom":
            return period, _(
                "The dates were not understood (use YYYY-MM-DD, from %(first)s to %(last)s): showing %(period)s."
            ) % {"first": FIRST_DAY.isoformat(), "last": LAST_DAY.isoformat(), "period": period.label.lower()}
        return period, ""

    @classmethod
    def from_query(cls, query: QueryDict | dict[str, str], *, today: date | None = None) -> Period:
        """A period from ?period=…[&start=&end=]; anything unparseable falls back to the default."""
        today = today or timezone.localdate(timezone=dashboard_tz())
        preset = query.get("period") or DEFAULT_PRESET
        if preset == "custom" or (query.get("start") and query.get("end") and preset not in PRESETS):
            try:
                first = supported_day(date.fromisoformat(str(query.get("start"))))
                last = supported_day(date.fromisoformat(str(query.get("end"))))
            except ValueError:
                return cls.preset_for(DEFAULT_PRESET, today)
            if last < first:
                first, last = last, first
            first = max(first, last - timedelta(days=MAX_DAYS))
            return cls("custom", first, last)
        return cls.preset_for(preset if preset in PRESETS else DEFAULT_PRESET, today)

    @classmethod
    def preset_for(cls, preset: str, today: date) -> Period:
        if preset == "today":
            return cls(preset, today, today)
        if preset == "7d":
            return cls(preset, today - timedelta(days=6), today)
        if preset == "this_month":
            return cls(preset, today.replace(day=1), today)
        if preset == "last_month":
            last = today.replace(day=1) - timedelta(days=1)
            return cls(preset, last.replace(day=1), last)
        return cls("30d", today - timedelta(days=29), today)
