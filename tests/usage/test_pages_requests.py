"""The request log: filters, keyset pages in both directions, one request's detail and the CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from usage.models import UsageRecord
from usage.periods import dashboard_tz
from usage.schemas import validate_records
from usage.services import create_account, record_usage
from usage.views.requests import PAGE_SIZE


def ingest(account, records: list[dict[str, Any]], source: str = "api") -> None:
    valid, rejected = validate_records(records)
    assert not rejected
    record_usage(account, valid, source=source)


def build_records(now: datetime) -> list[dict[str, Any]]:
    """137 requests; many share a timestamp (bursts of 7), so paging must break ties by id."""
    records = []
    for n in range(137):
        failed = n % 6 == 5
        estimated = n % 4 == 2 and not failed
        record: dict[str, Any] = {
            "request_id": f"req-{n:03d}",
            "occurred_at": (now - timedelta(hours=2 + n // 7)).isoformat(),  # 7 requests per instant
            "model": ["gpt-4o", "gpt-4o-mini", "deepseek-chat"][n % 3],
            "api_key": ["name:alpha", "name:beta"][n % 2],
            "metadata": {"team": ["search", "support"][n % 2 if n % 5 else 0], "feature": f"f{n % 3}"},
            "latency_ms": 50 + n,
            "cost": f"0.{n:04d}1",
        }
        if failed:
            record |= {"status_code": 401, "error": {"type": "invalid_request_error", "code": "invalid_api_key"}}
        elif estimated:
            record |= {"context_bytes": 800 + n, "output_bytes": 120}
        else:
            record["usage"] = {"prompt_tokens": 300 + n, "completion_tokens": 40 + n}
        records.append(record)
    return records


@pytest.fixture
def now() -> datetime:
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def records(account, now) -> list[dict[str, Any]]:
    records = build_records(now)
    ingest(account, records[:100])
    ingest(account, records[100:], source="import")
    return records


def source_of(record: dict[str, Any]) -> str:
    return "api" if int(record["request_id"][4:]) < 100 else "import"


def newest_first(records: list[dict[str, Any]]) -> list[str]:
    """Request ids newest first; at equal times the later-stored (higher id) one first."""
    ids = dict(UsageRecord.objects.values_list("request_id", "pk"))
    ordered = sorted(records, key=lambda r: (datetime.fromisoformat(r["occurred_at"]), ids[r["request_id"]]))
    return [r["request_id"] for r in reversed(ordered)]


def ids_on(response) -> list[str]:
    return re.findall(r'<tr data-request-id="([^"]+)">', response.content.decode())


def link(response, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}" href="([^"]+)"', response.content.decode())
    return found.group(1).replace("&amp;", "&") if found else None


def test_the_log_lists_the_newest_requests_first_one_page_at_a_time(engineer_client, records):
    response = engineer_client.get(reverse("usage:requests"))

    assert response.status_code == 200
    assert ids_on(response) == newest_first(records)[:PAGE_SIZE]
    assert link(response, "next") is not None and link(response, "prev") is None


def test_older_links_walk_every_row_once_and_newer_links_walk_back(engineer_client, records):
    expected = newest_first(records)
    pages, url = [], reverse("usage:requests")
    while url:
        response = engineer_client.get(url)
        pages.append(ids_on(response))
        url = link(response, "next")

    assert [rid for page in pages for rid in page] == expected  # no repeat, no gap
    assert len(pages) == -(-len(expected) // PAGE_SIZE)

    back = [ids_on(response)]
    url = link(response, "prev")
    while url:
        response = engineer_client.get(url)
        back.append(ids_on(response))
        url = link(response, "prev")
    assert back == pages[::-1]


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ({"model": "gpt-4o-mini"}, lambda r: r["model"] == "gpt-4o-mini"),
        ({"model": "gpt-4o", "api_key": "beta"}, lambda r: r["model"] == "gpt-4o" and r["api_key"] == "name:beta"),
        ({"team": "search", "status": "failed"}, lambda r: r["metadata"]["team"] == "search" and "error" in r),
        ({"status": "ok", "estimated": "1"}, lambda r: "context_bytes" in r),
        (
            {"error_cause": "invalid_api_key", "team": "search"},
            lambda r: "error" in r and r["metadata"]["team"] == "search",
        ),
        (
            {"source": "import", "model": "deepseek-chat"},
            lambda r: source_of(r) == "import" and r["model"] == "deepseek-chat",
        ),
    ],
)
def test_filters_combine(engineer_client, records, query, keep):
    expected = newest_first([r for r in records if keep(r)])
    assert expected, "the data set must have rows for each combination"

    seen, url, params = [], reverse("usage:requests"), query
    while url:
        response = engineer_client.get(url, params)
        assert response.status_code == 200
        seen.extend(ids_on(response))
        url, params = link(response, "next"), None

    assert seen == expected


def test_a_custom_date_range_limits_the_log(engineer_client, records, now):
    tz = dashboard_tz()
    day = (now - timedelta(hours=2)).astimezone(tz).date()
    start = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    expected = [r for r in records if start <= datetime.fromisoformat(r["occurred_at"]) < start + timedelta(days=1)]

    response = engineer_client.get(
        reverse("usage:requests"), {"period": "custom", "start": day.isoformat(), "end": day.isoformat()}
    )

    assert ids_on(response) == newest_first(expected)[:PAGE_SIZE]


def test_htmx_gets_only_the_body_of_the_log(engineer_client, records):
    response = engineer_client.get(reverse("usage:requests"), {"model": "gpt-4o"}, HTTP_HX_REQUEST="true")

    page = response.content.decode()
    assert "<html" not in page and 'id="requests-filter"' in page
    assert ids_on(response) == newest_first([r for r in records if r["model"] == "gpt-4o"])[:PAGE_SIZE]


@pytest.mark.parametrize("cursor", ["garbage", "bm90LWEtZGF0ZXwx", "%%%", "MjAyNi0wMS0wMVQwMDowMDowMHxub3QtYW4taWQ"])
@pytest.mark.parametrize("direction", ["after", "before"])
def test_a_broken_page_link_is_a_400_that_says_so_and_shows_the_newest(engineer_client, records, cursor, direction):
    response = engineer_client.get(reverse("usage:requests"), {direction: cursor})

    assert response.status_code == 400
    assert "page link is broken" in response.content.decode()
    assert ids_on(response) == newest_first(records)[:PAGE_SIZE]


def test_an_unknown_filter_value_is_a_400_that_names_it(engineer_client, records):
    response = engineer_client.get(reverse("usage:requests"), {"error_cause": "gremlins", "status": "maybe"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "Error cause:" in page and "Status:" in page
    assert ids_on(response) == newest_first(records)[:PAGE_SIZE]


def test_bad_dates_show_the_default_period_with_a_notice(engineer_client, records):
    response = engineer_client.get(reverse("usage:requests"), {"period": "custom", "start": "yesterday", "end": "2"})

    assert response.status_code == 200
    assert "dates were not understood" in response.content.decode()


# --- One request --------------------------------------------------------------------------


def test_the_detail_shows_every_stored_field(engineer_client, account):
    ingest(
        account,
        [
            {
                "request_id": "detail-1",
                "occurred_at": "2026-03-04T05:06:07Z",
                "model": "org/model.v2",
                "api_key": "sk-live-abcdefghijklmnop1234",
                "endpoint": "/v1/responses",
                "stream": True,
                "status_code": 200,
                "usage": {
                    "input_tokens": 12345,
                    "output_tokens": 678,
                    "input_tokens_details": {"cached_tokens": 2000},
                    "output_tokens_details": {"reasoning_tokens": 90},
                },
                "context_chars": 51000,
                "context_bytes": 52000,
                "output_chars": 2500,
                "output_bytes": 2600,
                "message_count": 7,
                "context_profile": {
                    "cjk": 11,
                    "letters": 40000,
                    "digits": 989,
                    "spaces": 8000,
                    "punct": 2000,
                    "other": 0,
                },
                "latency_ms": 4321,
                "ttft_ms": 321,
                "cost": "0.0123456789",
                "metadata": {"team": "research", "user": "u-42", "feature": "summaries"},
                "response_id": "resp_0123",
                "upstream_request_id": "20260304050607abcd",
            }
        ],
    )
    record = UsageRecord.objects.get(request_id="detail-1")

    page = engineer_client.get(reverse("usage:request_detail", args=[record.pk])).content.decode()

    for shown in [
        "detail-1",
        "2026-03-04T05:06:07+00:00",
        reverse("usage:model_detail", args=["org/model.v2"]),
        "/v1/responses",
        "…1234",
        "research",
        "12,345",
        "2,000",
        "678",
        "90",
        "13,023",
        "Reported",
        "0.01 USD",
        "0.0123456789",
        "Reported by provider",
        "51,000",
        "52,000",
        "2,500",
        "2,600",
        "40,000",
        "989",
        "4,321 ms",
        "321 ms",
        "u-42",
        "summaries",
        "Ingestion API",
        record.content_hash,
        "resp_0123",
        "20260304050607abcd",
    ]:
        assert shown in page, shown
    assert "sk-live-abcdefghijklmnop1234" not in page


def test_the_detail_names_the_other_sources_that_brought_the_same_call(engineer_client, account):
    call = {"occurred_at": "2026-03-04T05:06:07Z", "model": "m", "upstream_request_id": "rid-7"}
    ingest(account, [call | {"request_id": "proxy-7"}], source="proxy")
    ingest(account, [call | {"request_id": "rid-7"}], source="sync")
    record = UsageRecord.objects.get(account=account)

    page = engineer_client.get(reverse("usage:request_detail", args=[record.pk])).content.decode()

    seen_by = re.search(r'id="seen-by">(.*?)</dd>', page, re.S).group(1)
    assert re.sub(r"<[^>]+>|\s+", " ", seen_by).split() == ["Provider", "sync", "as", "rid-7"]


def test_another_accounts_request_is_not_found(engineer_client, account):
    other = create_account(name="Other", slug="other")
    ingest(other, [{"request_id": "x", "occurred_at": "2026-01-01T00:00:00Z", "model": "m"}])
    ingest(account, [{"request_id": "y", "occurred_at": "2026-01-01T00:00:00Z", "model": "m"}])

    theirs = UsageRecord.objects.get(account=other).pk

    assert engineer_client.get(reverse("usage:request_detail", args=[theirs])).status_code == 404


# --- CSV export ---------------------------------------------------------------------------


def read_csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_csv_export_streams_every_filtered_row_with_plain_costs_and_utc_times(engineer_client, records):
    response = engineer_client.get(reverse("usage:requests_csv"), {"api_key": "alpha"})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="requests-acme-')
    rows = read_csv(response)
    expected = {r["request_id"]: r for r in records if r["api_key"] == "name:alpha"}
    assert [row["request_id"] for row in rows] == newest_first(list(expected.values()))
    assert len(rows) > PAGE_SIZE  # more than one page of the log: the export is not the page
    for row in rows:
        source = expected[row["request_id"]]
        assert Decimal(row["cost"]) == Decimal(source["cost"])
        assert "E" not in row["cost"].upper()
        assert row["occurred_at"].endswith("Z")
        assert datetime.fromisoformat(row["occurred_at"]) == datetime.fromisoformat(source["occurred_at"]).astimezone(
            UTC
        )
        assert row["api_key"] == source["api_key"].removeprefix("name:")
        assert row["team"] == source["metadata"]["team"]
        if "usage" in source:
            assert int(row["prompt_tokens"]) == source["usage"]["prompt_tokens"]
            assert row["tokens_source"] == "reported"


def test_the_csv_export_has_a_header_even_when_nothing_matches(engineer_client, records):
    response = engineer_client.get(reverse("usage:requests_csv"), {"model": "nothing-like-this"})

    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[0].startswith("request_id,occurred_at,model,")
    assert len(body.splitlines()) == 1


def test_the_page_links_the_export_with_its_filters(engineer_client, records):
    page = engineer_client.get(reverse("usage:requests"), {"model": "gpt-4o", "period": "7d"}).content.decode()

    export = re.search(r'id="requests-csv" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert export.startswith(reverse("usage:requests_csv")) and "model=gpt-4o" in export and "period=7d" in export


def test_a_bad_export_filter_is_a_400_with_a_message(engineer_client, records):
    response = engineer_client.get(reverse("usage:requests_csv"), {"source": "carrier-pigeon"})

    assert response.status_code == 400
    assert b"Source:" in response.content


# --- Who may look ---------------------------------------------------------------------------


def test_finance_may_not_open_the_log_its_export_or_a_request(finance_client, records):
    pk = UsageRecord.objects.first().pk
    for url in (reverse("usage:requests"), reverse("usage:requests_csv"), reverse("usage:request_detail", args=[pk])):
        assert finance_client.get(url).status_code == 403, url
