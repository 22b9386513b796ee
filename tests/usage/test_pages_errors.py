"""The Errors page: failed requests of the period by cause, each with its remedy and a way to them."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from usage.error_causes import REMEDIES
from usage.periods import dashboard_tz
from usage.schemas import validate_records
from usage.services import record_usage

# What a failed call looks like, and the cause usage.error_causes gives it.
FAILURES: list[tuple[dict[str, Any], str]] = [
    ({"status_code": 401, "error": {"message": "Incorrect API key provided"}}, "invalid_api_key"),
    ({"status_code": 402, "error": {"type": "insufficient_quota", "message": "quota exceeded"}}, "insufficient_quota"),
    ({"status_code": 429, "error": {"type": "rate_limit_exceeded", "message": "slow down"}}, "rate_limited"),
    ({"status_code": 404, "error": {"code": "model_not_found", "message": "no such model"}}, "model_unavailable"),
    ({"status_code": 502, "error": {"message": "bad gateway"}}, "upstream_error"),
]
# How many of each failure: all different, so the order by frequency is unambiguous.
COUNTS = [3, 5, 9, 1, 2]


@pytest.fixture
def records(account) -> list[dict[str, Any]]:
    now = timezone.now()
    records: list[dict[str, Any]] = []
    for index, ((failure, _cause), count) in enumerate(zip(FAILURES, COUNTS, strict=True)):
        for n in range(count):
            records.append(
                {
                    "request_id": f"fail-{index}-{n}",
                    "occurred_at": (now - timedelta(days=n, hours=1, minutes=index)).isoformat(),
                    "model": "gpt-4o",
                }
                | failure
            )
    for n in range(40):
        records.append(
            {
                "request_id": f"ok-{n}",
                "occurred_at": (now - timedelta(days=n % 12, hours=2)).isoformat(),
                "model": "gpt-4o-mini",
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            }
        )
    valid, rejected = validate_records(records)
    assert not rejected
    record_usage(account, valid, source="api")
    return records


def expected_causes() -> Counter[str]:
    return Counter({cause: count for (_failure, cause), count in zip(FAILURES, COUNTS, strict=True)})


def rows_of(page: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-cause="([^"]+)">(.*?)</tr>', page, re.S))


def test_each_cause_shows_its_count_share_and_remedy_most_frequent_first(engineer_client, records):
    expected = expected_causes()
    failed = sum(expected.values())

    page = engineer_client.get(reverse("usage:errors")).content.decode()

    assert re.findall(r'<tr data-cause="([^"]+)">', page) == [cause for cause, _ in expected.most_common()]
    rows = rows_of(page)
    for cause, count in expected.items():
        assert f'<td class="num">{count}</td>' in rows[cause]
        assert f"{count / failed * 100:.0f}%" in rows[cause]
        assert str(REMEDIES[cause]) in rows[cause].replace("&#x27;", "'")
    assert re.search(r'id="errors-total">([^<]+)<', page).group(1) == str(failed)
    assert f"{failed / len(records) * 100:.2f}%" in page


def test_each_cause_links_to_the_request_log_filtered_to_it(engineer_client, records):
    page = engineer_client.get(reverse("usage:errors"), {"period": "7d"}).content.decode()

    tz = dashboard_tz()
    first_day = timezone.localdate(timezone=tz) - timedelta(days=6)
    for cause in expected_causes():
        href = re.search(r'<a href="([^"]+)">View requests', rows_of(page)[cause]).group(1).replace("&amp;", "&")
        assert f"error_cause={cause}" in href and "period=7d" in href
        log = engineer_client.get(href).content.decode()
        listed = re.findall(r'<tr data-request-id="([^"]+)">', log)
        status = next(failure["status_code"] for failure, c in FAILURES if c == cause)
        expected = [
            r["request_id"]
            for r in records
            if r.get("status_code") == status
            and datetime.fromisoformat(r["occurred_at"]).astimezone(tz).date() >= first_day
        ]
        assert sorted(listed) == sorted(expected)


def test_the_period_limits_the_counts(engineer_client, records):
    tz = dashboard_tz()
    today = timezone.localdate(timezone=tz)
    cause_of_status = {failure["status_code"]: cause for failure, cause in FAILURES}
    expected = Counter(
        cause_of_status[record["status_code"]]
        for record in records
        if "error" in record and datetime.fromisoformat(record["occurred_at"]).astimezone(tz).date() == today
    )

    page = engineer_client.get(reverse("usage:errors"), {"period": "today"}).content.decode()

    shown = {cause: int(re.search(r'<td class="num">(\d+)</td>', row).group(1)) for cause, row in rows_of(page).items()}
    assert shown == dict(expected)


def test_the_chart_of_failures_over_time_is_embedded_as_plotly_json(engineer_client, records):
    page = engineer_client.get(reverse("usage:errors")).content.decode()

    assert '<script id="errors-chart" type="application/json">' in page
    assert 'data-figure="errors-chart"' in page
    assert "Rate limited" in page.split('id="errors-chart"')[1]


def test_a_period_without_failures_says_so(engineer_client, account):
    page = engineer_client.get(reverse("usage:errors")).content.decode()

    assert "No failed requests in this period" in page
    assert "errors-chart" not in page


def test_htmx_gets_only_the_body(engineer_client, records):
    response = engineer_client.get(reverse("usage:errors"), {"period": "7d"}, HTTP_HX_REQUEST="true")

    page = response.content.decode()
    assert "<html" not in page and 'id="errors-table"' in page


def test_bad_dates_show_the_default_period_with_a_notice(engineer_client, records):
    response = engineer_client.get(reverse("usage:errors"), {"period": "custom", "start": "3000-99-01", "end": ""})

    assert response.status_code == 200
    assert "dates were not understood" in response.content.decode()


def test_finance_may_not_open_the_errors_page(finance_client, records):
    assert finance_client.get(reverse("usage:errors")).status_code == 403
