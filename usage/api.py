"""The usage API (docs/api.md, Endpoints): ingestion, summaries and single records."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.utils import translation
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from pydantic import AfterValidator

from toki_dashboard.roles import Role
from usage import deadletters, json_input, money, selectors, wire
from usage.auth import TokenAuth, read_access
from usage.exchange import conversion_note, rate_text, rates_applied
from usage.models import ErrorCause, RecordSource, TokenScope
from usage.periods import Period, supported_day
from usage.schemas import MAX_BATCH
from usage.selectors import requestlog
from usage.wire import validate_records

MAX_BODY_BYTES = 10 * 1024 * 1024
SET_ASIDE_MESSAGE = (
    "valid, but the database refused to store it; it is kept aside for an administrator to replay "
    "(sending it again changes nothing)"
)
# A day in DASHBOARD_TIME_ZONE that a period may start or end on (2000-01-01 to 9998-12-31).
Day = Annotated[date, AfterValidator(supported_day)]

router = Router(tags=["usage"])


def decimal_string(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value.quantize(Decimal("1e-10")).normalize(), "f")
    return "0" if text in ("-0", "0") else text


class Rejection(Schema):
    index: int
    field: str
    message: str


class Conflict(Schema):
    index: int
    request_id: str


class IngestResponse(Schema):
    accepted: int
    duplicates: int
    conflicts: list[Conflict]
    rejected: list[Rejection]
    other_source_duplicates: int = Field(
        description="Among the duplicates: calls another source (the proxy, a sync, an import) had already "
        "recorded, recognised by the provider's response or request id; linked to that record, counted once."
    )


class Problem(Schema):
    detail: str


# Answers every endpoint may give besides its success (documented so clients and fuzzers know
# them); 503 while the database is unavailable (toki_dashboard.api.database_unavailable).
PROBLEMS = {400: Problem, 401: Problem, 403: Problem, 404: Problem, 503: Problem}


def _records_of(request: HttpRequest) -> list[Any]:
    """The `records` list of the body, or a 400/413 that says what is wrong with it."""
    declared = request.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HttpError(413, f"Body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB.")
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        raise HttpError(413, f"Body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB.")
    if (plain := wire.decode_body(body, max_records=MAX_BATCH)) is not None:
        return plain  # every record plainly valid, decoded in compiled code
    try:
        payload = json_input.loads(body)
    except UnicodeDecodeError as exc:
        raise HttpError(400, f"Body is not valid UTF-8 (byte {exc.start}).") from exc
    except ValueError as exc:
        raise HttpError(400, f"Body is not valid JSON: {exc}.") from exc
    if not isinstance(payload, dict) or "records" not in payload:
        raise HttpError(400, 'Body must be a JSON object {"records": [...]}.')
    if unknown := sorted(set(payload) - {"records"}):
        raise HttpError(400, f"Unknown top-level field(s): {', '.join(unknown)}.")
    records = payload["records"]
    if not isinstance(records, list):
        raise HttpError(400, "records must be a JSON array.")
    if not records:
        raise HttpError(400, "records is empty; send 1 to 10,000 records.")
    if len(records) > MAX_BATCH:
        raise HttpError(413, f"records holds {len(records):,} records; at most {MAX_BATCH:,} per request.")
    return records


@router.post(
    "/usage",
    auth=TokenAuth(TokenScope.INGEST),
    response={200: IngestResponse, 413: Problem, **PROBLEMS},
    summary="Send per-request usage records",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestBatch"}}},
        }
    },
)
def ingest_usage(request: HttpRequest) -> dict[str, Any]:
    """Stores valid records, reports each invalid one by index and field. Replays are duplicates."""
    valid, rejected = validate_records(_records_of(request))
    account = request.auth.account()  # type: ignore[attr-defined]  # django-ninja's request.auth is the caller usage.auth authenticated
    result = deadletters.record_or_set_aside(account, valid, source=RecordSource.API)
    # A valid record the database refused is kept as a dead letter for an administrator to
    # replay; the caller learns it was not stored, by index, like a rejection.
    kept_aside = [
        {"index": item["index"], "field": "record", "message": SET_ASIDE_MESSAGE} for item in result.set_aside
    ]
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "conflicts": result.conflicts,
        "rejected": sorted(rejected + kept_aside, key=lambda r: r["index"]),
        "other_source_duplicates": result.other_source_duplicates,
    }


class SummaryQuery(Schema):
    start: Day
    end: Day
    group_by: Literal["model", "api_key", "team", "day"]
    account: str | None = None


class SummaryFigures(Schema):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    estimated_requests: int
    cost: str = Field(
        description="Usage value: price book × tokens (or the provider's cost); unpriced requests excluded"
    )
    unpriced_requests: int = Field(description="Requests without a price: their cost is not in `cost`")
    paid: str | None = Field(
        description="Paid, in `currency`: plan-covered tokens at each purchase's effective rate plus wallet "
        "charges; null when nothing records payments"
    )
    paid_not_converted: dict[str, str] = Field(
        default_factory=dict, description="Paid in other currencies than `currency`, by currency, not in `paid`"
    )
    paid_unknown_requests: int = Field(
        0, description="Unpriced requests charged to the wallet: what they cost is not in `paid`"
    )
    paid_pending_requests: int = Field(
        0, description="Requests not allocated to plans or the wallet yet (seconds after arrival): not in `paid`"
    )


class SummaryRowOut(SummaryFigures):
    key: str


class AppliedRateOut(Schema):
    from_currency: str
    to_currency: str
    rate: str
    effective_from: datetime


class SummaryOut(Schema):
    start: date
    end: date
    currency: str
    rows: list[SummaryRowOut]
    total: SummaryFigures
    rates_applied: list[AppliedRateOut] = Field(
        default_factory=list,
        description="The exchange rates costs of the period were converted at into `currency` (prices "
        "only in another currency), oldest first per currency",
    )
    conversion_note: str = Field(
        "",
        description='The same in words, as pages, CSV and emails say it: "Converted from USD at 7.12 '
        '(from 1 Nov 2026), 7.2 (from 15 Nov 2026)"; empty when nothing was converted',
    )


def _figures(row: money.MoneyRow) -> dict[str, Any]:
    totals, paid = row.totals, row.paid
    return {
        "requests": totals.requests,
        "errors": totals.errors,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "cached_tokens": totals.cached_tokens,
        "estimated_requests": totals.estimated_requests,
        "cost": decimal_string(totals.cost),
        "unpriced_requests": totals.unpriced_requests,
        "paid": decimal_string(paid.amount) if paid is not None else None,
        "paid_not_converted": {
            currency: decimal_string(amount)
            for currency, amount in sorted((paid.not_converted if paid else {}).items())
        },
        "paid_unknown_requests": paid.unknown_requests if paid is not None else 0,
        "paid_pending_requests": row.pending_requests,
    }


@router.get(
    "/usage/summary", auth=read_access(), response={200: SummaryOut, **PROBLEMS}, summary="Usage totals by a dimension"
)
def usage_summary(request: HttpRequest, query: Query[SummaryQuery]) -> dict[str, Any]:
    """Dates are inclusive days in DASHBOARD_TIME_ZONE. `cost` is the usage value (price book ×
    tokens), `paid` what was paid for the same usage (plan tokens at each purchase's effective
    rate, plus wallet charges)."""
    if query.end < query.start:
        raise HttpError(400, "end is before start.")
    account = request.auth.account(query.account)  # type: ignore[attr-defined]  # django-ninja's request.auth is the caller usage.auth authenticated
    period = Period("custom", query.start, query.end)
    rows, total = money.summary(account=account, period=period, group_by=query.group_by)
    rates = rates_applied(account, period.start, period.end)
    return {
        "start": query.start,
        "end": query.end,
        "currency": account.currency,
        "rows": [{"key": row.key, **_figures(row)} for row in rows],
        "total": _figures(total),
        "rates_applied": [
            {
                "from_currency": r.from_currency,
                "to_currency": r.to_currency,
                "rate": rate_text(r.rate),
                "effective_from": r.effective_from,
            }
            for r in rates
        ],
        "conversion_note": conversion_note(rates),
    }


class RecordsQuery(Schema):
    start: Day
    end: Day
    model: str = ""
    api_key: str = ""
    team: str = ""
    error_cause: ErrorCause | Literal[""] = ""
    source: RecordSource | Literal[""] = ""
    estimated: bool | None = None
    account: str | None = None
    limit: int = Field(100, ge=1, le=requestlog.MAX_PAGE)
    cursor: str | None = None


class RecordOut(Schema):
    request_id: str
    occurred_at: datetime
    model: str
    api_key: str | None
    team: str
    status_code: int
    error_cause: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    tokens_source: str
    estimator_version: str
    cost: str | None
    latency_ms: int | None
    ttft_ms: int | None
    source: str


class RecordsOut(Schema):
    records: list[RecordOut]
    next_cursor: str | None
    # Set when part of the period is past RAW_RETENTION_MONTHS: its requests are summarised only.
    retention_notice: str | None = None


@router.get(
    "/usage/records",
    auth=read_access(Role.ENGINEER),
    response={200: RecordsOut, **PROBLEMS},
    summary="Single requests, newest first",
)
def usage_records(request: HttpRequest, query: Query[RecordsQuery]) -> dict[str, Any]:
    """Keyset-paginated: pass `next_cursor` back as `cursor` for the next page."""
    if query.end < query.start:
        raise HttpError(400, "end is before start.")
    account = request.auth.account(query.account)  # type: ignore[attr-defined]  # django-ninja's request.auth is the caller usage.auth authenticated
    period = Period("custom", query.start, query.end)
    filters = requestlog.RecordFilters(
        start=period.start,
        end=period.end,
        model=query.model,
        api_key=query.api_key,
        team=query.team,
        error_cause=query.error_cause,
        source=query.source,
        estimated=query.estimated,
    )
    try:
        rows, next_cursor = requestlog.page(account, filters, cursor=query.cursor, limit=query.limit)
    except requestlog.BadCursor as exc:
        raise HttpError(400, str(exc)) from exc
    return {
        "records": [
            {
                "request_id": r.request_id,
                "occurred_at": r.occurred_at,
                "model": r.model,
                "api_key": r.api_key.name if r.api_key else None,
                "team": r.team,
                "status_code": r.status_code,
                "error_cause": r.error_cause,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "cached_tokens": r.cached_tokens,
                "reasoning_tokens": r.reasoning_tokens,
                "tokens_source": r.tokens_source,
                "estimator_version": r.estimator_version,
                "cost": decimal_string(r.cost),
                "latency_ms": r.latency_ms,
                "ttft_ms": r.ttft_ms,
                "source": r.source,
            }
            for r in rows
        ],
        "next_cursor": next_cursor,
        "retention_notice": _english_retention_notice(period) or None,
    }


def _english_retention_notice(period: Period) -> str:
    """The retention notice in English whatever the caller's language: scripts read the API."""
    with translation.override("en"):
        return selectors.raw_detail_notice(period.start, period.end)
