"""Reports: a monthly statement (usage value and paid by model, key and team from the rollups, plan
and wallet consumption) and its CSV download. Months are calendar months in
DASHBOARD_TIME_ZONE; the default is the last complete one."""

from __future__ import annotations

import csv
import re
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from babel.numbers import get_currency_precision
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from billing import selectors
from toki_dashboard.roles import Role, role_required
from usage.api import decimal_string
from usage.exchange import conversion_note, rates_applied
from usage.money import MoneyRow, compared
from usage.periods import dashboard_tz
from usage.selectors import NO_TEAM
from usage.tenancy import current_account, current_account_or_none

MONTH = re.compile(r"(?P<year>\d{4})-(?P<month>\d{2})")
FIRST_YEAR, LAST_YEAR = 2000, 9998
SECTION_LABELS = {"model": gettext_lazy("Model"), "key": gettext_lazy("API key"), "team": gettext_lazy("Team")}
SECTION_TITLES = {
    "model": gettext_lazy("By model"),
    "key": gettext_lazy("By API key"),
    "team": gettext_lazy("By team"),
}
NO_GROUP = {"model": gettext_lazy("(no model)"), "key": gettext_lazy("(no key)"), "team": gettext_lazy("(no team)")}
CSV_HEADER = [
    "section",
    "key",
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "tokens",
    "unpriced_requests",
    "usage_value",
    "usage_value_exact",
    "paid",
    "paid_exact",
    "paid_not_converted",
    "paid_unknown_requests",
    "paid_pending_requests",
    "currency",
    "converted_at",
]
UNPRICED = "unpriced"


def parse_month(text: str) -> date | None:
    """The first day of "YYYY-MM", or None when it is not a month we can show."""
    match = MONTH.fullmatch(text.strip())
    if match is None:
        return None
    year, month = int(match["year"]), int(match["month"])
    if not (FIRST_YEAR <= year <= LAST_YEAR and 1 <= month <= 12):
        return None
    return date(year, month, 1)


def last_complete_month(today: date | None = None) -> date:
    today = today or timezone.localdate(timezone=dashboard_tz())
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1)


def _shift(first_day: date, months: int) -> date:
    index = first_day.year * 12 + first_day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@role_required(Role.FINANCE)
@require_GET
def reports(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    requested = request.GET.get("month", "")
    month = parse_month(requested) if requested else None
    month_error = (
        _("“%(requested)s” is not a month (YYYY-MM, %(first)s–%(last)s); showing the last complete month.")
        % {"requested": requested[:20], "first": FIRST_YEAR, "last": LAST_YEAR}
        if requested and month is None
        else ""
    )
    month = month or last_complete_month()
    this_month = timezone.localdate(timezone=dashboard_tz()).replace(day=1)
    if month > this_month:
        month_error = _(
            "%(month)s has not started yet: statements go up to %(this_month)s (so far). Showing %(this_month)s."
        ) % {
            "month": formats.date_format(month, "YEAR_MONTH_FORMAT"),
            "this_month": formats.date_format(this_month, "YEAR_MONTH_FORMAT"),
        }
        month = this_month
    context: dict[str, Any] = {
        "account": account,
        "month": month,
        "month_value": f"{month:%Y-%m}",
        "month_error": month_error,
        "previous_month": f"{_shift(month, -1):%Y-%m}",
        "previous_month_first_day": _shift(month, -1),
        "latest_month": f"{this_month:%Y-%m}",
        "next_month": f"{_shift(month, 1):%Y-%m}" if month < this_month else "",
        "tz_name": settings.DASHBOARD_TIME_ZONE,
    }
    if account is not None:
        statement = selectors.monthly_statement(account, first_day=month)
        before = selectors.monthly_statement(account, first_day=_shift(month, -1))
        before_rows = dict(before.sections)
        context |= {
            "statement": statement,
            "previous_total": before.total,
            "period_query": statement.period.query_string,
            "no_value": NO_TEAM,
            "rates_applied": rates_applied(account, statement.period.start, statement.period.end),
            "sections": [
                (name, SECTION_TITLES[name], SECTION_LABELS[name], NO_GROUP[name], compared(rows, before_rows[name]))
                for name, rows in statement.sections
            ],
        }
    return render(request, "billing/reports.html", context, status=400 if month_error else 200)


@role_required(Role.FINANCE)
@require_GET
def report_csv(request: HttpRequest, month: str) -> HttpResponse:
    """The statement as CSV: one row per model, key and team (section column), then the total;
    usage value and paid rounded to the currency's decimals, each with its exact amount beside.
    The total row's `converted_at` says which exchange rates the month's usage value was
    converted at, in the words the pages use (usage.exchange.conversion_note)."""
    account = current_account(request)
    first_day = parse_month(month)
    if first_day is None:
        raise Http404("No such statement")
    statement = selectors.monthly_statement(account, first_day=first_day)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="toki-statement-{account.slug}-{first_day:%Y-%m}.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_HEADER)
    for name, rows in statement.sections:
        for row in rows:
            writer.writerow([*_csv_row(name, row, account.currency), ""])
    note = conversion_note(rates_applied(account, statement.period.start, statement.period.end))
    writer.writerow([*_csv_row("total", statement.total, account.currency), note])
    return response


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """A name as spreadsheet text: one starting like a formula is quoted, never evaluated."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _rounded(amount: Decimal, currency: str) -> str:
    """Money to the currency's decimals (2 for USD, 0 for JPY), rounded half up like an invoice."""
    places = get_currency_precision(currency)
    return f"{amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):f}"


def _exact(amount: Decimal) -> str:
    return decimal_string(amount) or "0"


def _csv_row(section: str, row: MoneyRow, currency: str) -> list[Any]:
    """One line: usage value and paid each rounded to the currency, with the exact amount beside.
    What is not known says so ("unpriced", other currencies, requests left out), never 0."""
    totals, paid = row.totals, row.paid
    value, value_exact = (UNPRICED, "") if totals.unpriced else (_rounded(totals.cost, currency), _exact(totals.cost))
    if paid is None:
        paid_cells: list[str | int] = ["", "", "", "", ""]
    else:
        if not paid.amount and paid.unknown_requests and not paid.requests - paid.unknown_requests:
            shown, exact = UNPRICED, ""
        else:
            shown, exact = _rounded(paid.amount, currency), _exact(paid.amount)
        other = "; ".join(f"{_exact(amount)} {code}" for code, amount in sorted(paid.not_converted.items()))
        paid_cells = [shown, exact, other, paid.unknown_requests, row.pending_requests]
    return [
        section,
        _cell(row.key),
        totals.requests,
        totals.errors,
        totals.prompt_tokens,
        totals.completion_tokens,
        totals.cached_tokens,
        totals.tokens,
        totals.unpriced_requests,
        value,
        value_exact,
        *paid_cells,
        currency,
    ]
