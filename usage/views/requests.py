"""The request log: filtered single requests, keyset-paginated, one request's detail, a CSV export."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC
from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy

from toki_dashboard.htmx import render_page
from toki_dashboard.roles import Role, role_required
from usage import identity, selectors
from usage.api import decimal_string
from usage.catalogue import selectors as catalogue
from usage.error_causes import remedy
from usage.models import Account, ErrorCause, RecordSource, UsageRecord
from usage.periods import PRESETS, Period
from usage.selectors import requestlog
from usage.tenancy import current_account, current_account_or_none

PAGE_SIZE = 50
STATUS_CHOICES = [
    ("", gettext_lazy("Any status")),
    ("ok", gettext_lazy("Succeeded")),
    ("failed", gettext_lazy("Failed")),
]
CAUSE_CHOICES = [
    ("", gettext_lazy("Any cause")),
    *[(value, label) for value, label in ErrorCause.choices if value != ErrorCause.NONE],
]
SOURCE_CHOICES = [("", gettext_lazy("Any source")), *RecordSource.choices]
PERIOD_FIELDS = ("period", "start", "end")


def keep(query: QueryDict, *names: str) -> list[tuple[str, str]]:
    """(name, value) pairs of the query worth carrying in hidden inputs of another form."""
    return [(name, value) for name in names if (value := query.get(name, ""))]


def with_query(url: str, query: QueryDict, **changes: str | None) -> str:
    """`url` with the current query, some parameters replaced (or removed when None)."""
    updated = query.copy()
    for name, value in changes.items():
        updated.pop(name, None)
        if value is not None:
            updated[name] = value
    encoded = updated.urlencode()
    return f"{url}?{encoded}" if encoded else url


def _choices_with(values: list[str], current: str, empty: str) -> list[tuple[str, str]]:
    # A bookmarked value stays selectable even when the period has no usage for it.
    options = values if not current or current in values else [current, *values]
    return [("", empty), *[(value, value) for value in options]]


class RequestFilterForm(forms.Form):
    model = forms.ChoiceField(required=False, label=gettext_lazy("Model"))
    api_key = forms.ChoiceField(required=False, label=gettext_lazy("Key"))
    team = forms.ChoiceField(required=False, label=gettext_lazy("Team"))
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES, label=gettext_lazy("Status"))
    error_cause = forms.ChoiceField(required=False, choices=CAUSE_CHOICES, label=gettext_lazy("Error cause"))
    source = forms.ChoiceField(required=False, choices=SOURCE_CHOICES, label=gettext_lazy("Source"))
    estimated = forms.BooleanField(required=False, label=gettext_lazy("Estimated tokens only"))

    def __init__(self, data: QueryDict, *, account: Account, period: Period) -> None:
        super().__init__(data)
        for name, dimension, empty in (
            ("model", "model", gettext("All models")),
            ("api_key", "api_key__name", gettext("All keys")),
            ("team", "team", gettext("All teams")),
        ):
            if name == "model":  # the provider's listed models too, used or not
                values = catalogue.model_choices(account, period)
            else:
                values = selectors.dimension_values(account=account, period=period, dimension=dimension)
            self.fields[name].choices = _choices_with(values, str(data.get(name, ""))[:200], empty)  # type: ignore[attr-defined]  # a ChoiceField: the filter form declares them so

    def record_filters(self, period: Period) -> requestlog.RecordFilters:
        self.is_valid()  # an invalid field is left out; the valid ones still filter
        data = self.cleaned_data
        status = data.get("status", "")
        cause = data.get("error_cause", "")
        return requestlog.RecordFilters(
            start=period.start,
            end=period.end,
            model=data.get("model", ""),
            api_key=data.get("api_key", ""),
            team=data.get("team", ""),
            error_cause=cause,
            source=data.get("source", ""),
            estimated=True if data.get("estimated") else None,
            failed={"ok": False, "failed": True}.get(status),
        )

    def problems(self) -> list[str]:
        return [
            f"{self.fields[name].label or name.replace('_', ' ').capitalize()}: {' '.join(map(str, errors))}"
            for name, errors in self.errors.items()
        ]


FILTER_FIELDS = tuple(RequestFilterForm.base_fields)


@role_required(Role.ENGINEER)
def requests_log(request: HttpRequest) -> HttpResponse:
    """Filters that cannot be understood, or a broken page link, answer 400 with the message
    and the newest requests the rest of the query selects; odd dates just fall back."""
    account = current_account_or_none(request)
    period, period_warning = Period.read(request.GET)
    url = reverse("usage:requests")
    context: dict[str, Any] = {"period": period, "presets": PRESETS, "account": account, "notices": []}
    if period_warning:
        context["notices"].append(period_warning)
    if retention := selectors.raw_detail_notice(period.start, period.end):
        context["notices"].append(retention)
    problems: list[str] = []
    if account is not None:
        form = RequestFilterForm(request.GET, account=account, period=period)
        if not form.is_valid():
            problems.extend(form.problems())
        filters = form.record_filters(period)
        try:
            rows, older, newer = _page_of(account, filters, request.GET)
        except requestlog.BadCursor:
            problems.append(gettext("The page link is broken or outdated: showing the newest requests."))
            rows, older = requestlog.page(account, filters, limit=PAGE_SIZE)
            newer = None
        context |= {
            "form": form,
            "rows": rows,
            "page_size": PAGE_SIZE,
            "older_url": with_query(url, request.GET, after=older, before=None) if older else "",
            "newer_url": with_query(url, request.GET, before=newer, after=None) if newer else "",
            "first_url": with_query(url, request.GET, before=None, after=None) if newer else "",
            "csv_url": with_query(reverse("usage:requests_csv"), request.GET, before=None, after=None),
            "picker_keep": keep(request.GET, *FILTER_FIELDS),
            "filter_keep": keep(request.GET, *PERIOD_FIELDS),
            "picker_url": url,
            "picker_target": "#requests-body",
        }
    context["problems"] = problems
    status = 400 if problems else 200
    return render_page(request, "usage/requests.html", "usage/partials/requests_body.html", context, status=status)


def _page_of(
    account: Account, filters: requestlog.RecordFilters, query: QueryDict
) -> tuple[list[UsageRecord], str | None, str | None]:
    """The rows of the page the query asks for, the cursor of the older page and of the newer one.
    Raises BadCursor for a cursor this page did not make."""
    after, before = query.get("after", ""), query.get("before", "")
    if before:
        rows, more_newer = requestlog.newer_page(account, filters, cursor=before, limit=PAGE_SIZE)
        if more_newer:
            return rows, requestlog.encode_cursor(rows[-1]), requestlog.encode_cursor(rows[0])
    elif after:
        rows, older = requestlog.page(account, filters, cursor=after, limit=PAGE_SIZE)
        return rows, older, requestlog.encode_cursor(rows[0]) if rows else None
    rows, older = requestlog.page(account, filters, limit=PAGE_SIZE)  # the newest page, whole
    return rows, older, None


@role_required(Role.ENGINEER)
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    account = current_account(request)
    records = UsageRecord.objects.select_related("api_key", "price", "exchange_rate")
    record = get_object_or_404(records, account=account, pk=pk)
    context = {
        "account": account,
        "record": record,
        "sightings": identity.sightings_of(record),
        "profiles": _profiles(record),
        "tz_name": settings.DASHBOARD_TIME_ZONE,
        "model_url": reverse("usage:model_detail", args=[record.model]),
        "remedy": remedy(record.error_cause),
        "errors_url": reverse("usage:errors"),
        "same_key": requestlog.neighbours(record, api_key=record.api_key_id) if record.api_key_id else None,
        "same_model": requestlog.neighbours(record, model=record.model),
    }
    return render(request, "usage/request_detail.html", context)


PROFILE_CLASSES = ("cjk", "letters", "digits", "spaces", "punct", "other")
# How each character class of the estimator is named on the page.
PROFILE_LABELS: dict[str, str | Promise] = {
    "cjk": gettext_lazy("CJK"),
    "letters": gettext_lazy("Letters"),
    "digits": gettext_lazy("Digits"),
    "spaces": gettext_lazy("Spaces"),
    "punct": gettext_lazy("Punctuation"),
    "other": gettext_lazy("Other"),
}


def _profiles(record: UsageRecord) -> list[tuple[str, int | None, int | None]]:
    context, output = record.context_profile or {}, record.output_profile or {}
    if not context and not output:
        return []
    return [(str(PROFILE_LABELS[name]), context.get(name), output.get(name)) for name in PROFILE_CLASSES]


CSV_COLUMNS = (
    "request_id",
    "occurred_at",
    "model",
    "api_key",
    "team",
    "endpoint",
    "stream",
    "status_code",
    "error_cause",
    "error_type",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "tokens_source",
    "estimator_version",
    "cost",
    "cost_source",
    "latency_ms",
    "ttft_ms",
    "source",
)


class _Echo:
    """A file-like object whose write() hands the line back, for csv.writer in a stream."""

    def write(self, value: str) -> str:
        return value


def csv_rows(account: Account, filters: requestlog.RecordFilters) -> Iterator[str]:
    """The header, the requests, and, when part of the period is past retention, a last line
    starting with "#" that says so (the rows before it are what is kept)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    yield from _csv_records(writer, account, filters)
    with translation.override("en"):  # read by scripts and spreadsheets, as its column names
        retention = selectors.raw_detail_notice(filters.start, filters.end)
    if retention:
        yield f"# {retention}\r\n"


def _csv_records(writer: Any, account: Account, filters: requestlog.RecordFilters) -> Iterator[str]:
    for r in requestlog.iterate(account, filters):
        yield writer.writerow(
            (
                r.request_id,
                r.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                r.model,
                r.api_key.name if r.api_key else "",
                r.team,
                r.endpoint,
                "true" if r.stream else "false",
                r.status_code,
                r.error_cause,
                r.error_type,
                r.error_code,
                r.prompt_tokens,
                r.completion_tokens,
                r.cached_tokens,
                r.reasoning_tokens,
                r.tokens_source,
                r.estimator_version,
                decimal_string(r.cost) or "",
                r.cost_source,
                "" if r.latency_ms is None else r.latency_ms,
                "" if r.ttft_ms is None else r.ttft_ms,
                r.source,
            )
        )


@role_required(Role.ENGINEER)
def requests_csv(request: HttpRequest) -> HttpResponseBase:
    account = current_account(request)
    period, _ = Period.read(request.GET)
    form = RequestFilterForm(request.GET, account=account, period=period)
    if not form.is_valid():
        return HttpResponse("\n".join(form.problems()) + "\n", status=400, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(csv_rows(account, form.record_filters(period)), content_type="text/csv")
    filename = f"requests-{account.slug}-{period.first_day:%Y%m%d}-{period.last_day:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
