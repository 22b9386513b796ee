"""Reads about exchange rates: which rates a window's costs were converted at (for the
"Converted from USD at …" note beside converted figures), and the history finance sees.

`conversion_note` is the one wording of that note: pages, htmx cards, the statement CSV,
/api/v1/usage/summary and alert emails all show its text, so a converted figure reads the
same wherever it appears.

Which rate applies when is `usage.pricing.price_book.RateTable`; entering one is
`usage.pricing.services.set_exchange_rate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import groupby

from django.db.models import Exists, OuterRef
from django.utils import timezone

from usage.models import Account, ExchangeRate, UsageRecord
from usage.periods import dashboard_tz


@dataclass(frozen=True)
class AppliedRate:
    from_currency: str
    to_currency: str
    rate: Decimal
    effective_from: datetime


def rates_applied(account: Account, start: datetime, end: datetime) -> list[AppliedRate]:
    """The rates the costs of the account's records in [start, end) were converted at, by
    currency then date. One probe of an index per rate into the account's currency (a
    handful), never a scan of the window's records."""
    used = UsageRecord.objects.filter(
        exchange_rate=OuterRef("pk"), account=account, occurred_at__gte=start, occurred_at__lt=end
    )
    rates = (
        ExchangeRate.objects.filter(to_currency=account.currency)
        .filter(Exists(used))
        .order_by("from_currency", "effective_from", "pk")
    )
    return [AppliedRate(r.from_currency, r.to_currency, r.rate, r.effective_from) for r in rates]


def rate_text(value: Decimal) -> str:
    """7.1234000000 → "7.1234", 7.2 → "7.2", 100 → "100": every digit the rate has, no trailing zeros."""
    return format(value.normalize(), "f")


def conversion_note(rates: list[AppliedRate]) -> str:
    """ "Converted from USD at 7.12 (from 1 Nov 2026), 7.2 (from 15 Nov 2026)": what a figure's
    costs were converted at, dates in the dashboard's time zone; "" when nothing was converted."""
    if not rates:
        return ""
    zone = dashboard_tz()

    def one(rate: AppliedRate) -> str:
        day = rate.effective_from.astimezone(zone)
        return f"{rate_text(rate.rate)} (from {day.day} {day:%b %Y})"

    parts = [
        f"{currency} at " + ", ".join(one(rate) for rate in group)
        for currency, group in groupby(rates, key=lambda rate: rate.from_currency)
    ]
    return "Converted from " + "; ".join(parts)


@dataclass(frozen=True)
class RateEntry:
    """One entry of the rate history, with what became of it."""

    rate: ExchangeRate
    status: str  # "scheduled" | "in effect" | "ended" | "replaced"


def rate_history(*, limit: int = 200) -> list[RateEntry]:
    """The latest entries first, each saying whether it is in effect, scheduled, ended, or
    replaced by a later entry for the same pair and moment."""
    now = timezone.now()
    entries = list(ExchangeRate.objects.select_related("entered_by").order_by("-entered_at", "-pk")[:limit])
    # Per pair and moment the entry entered last counts; per pair the latest moment not after now is in effect.
    counted: dict[tuple[str, str, datetime], int] = {}
    current: dict[tuple[str, str], datetime] = {}
    for entry in ExchangeRate.objects.order_by("effective_from", "pk"):
        counted[(*entry.pair, entry.effective_from)] = entry.pk
        if entry.effective_from <= now:
            current[entry.pair] = entry.effective_from
    history = []
    for entry in entries:
        if counted[(*entry.pair, entry.effective_from)] != entry.pk:
            status = "replaced"
        elif entry.effective_from > now:
            status = "scheduled"
        elif current.get(entry.pair) == entry.effective_from:
            status = "in effect"
        else:
            status = "ended"
        history.append(RateEntry(entry, status))
    return history
