"""The Models page and a model's drill-down, over usage recorded through the ingestion service.

Expected figures are computed here from the records as written, never read back from the database.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.surfaces import text_by_id
from usage import latency
from usage.models import EstimatorFit, UsageRecord
from usage.periods import dashboard_tz
from usage.schemas import validate_records
from usage.services import record_usage

SLASHED = "vendor/llama-3.1.70b"
MODELS = ("gpt-4o", "gpt-4o-mini", SLASHED)


def ingest(account, records: list[dict[str, Any]], source: str = "api") -> None:
    valid, rejected = validate_records(records)
    assert not rejected
    record_usage(account, valid, source=source)


def build_records() -> list[dict[str, Any]]:
    """Three models with different volumes, failures, cached and estimated tokens, spread over 10 days."""
    now = timezone.now()
    records = []
    for model_index, model in enumerate(MODELS):
        for n in range(6 + 5 * model_index):
            failed = n % 4 == 3
            estimated = n % 5 == 1 and not failed
            record: dict[str, Any] = {
                "request_id": f"{model}-{n}",
                "occurred_at": (now - timedelta(days=n % 10, hours=1 + model_index, minutes=n)).isoformat(),
                "model": model,
                "api_key": ["alpha", "beta"][n % 2],
                "metadata": {"team": ["search", "support", "ops"][n % 3]},
                "latency_ms": 100 + 37 * ((n * 7 + model_index) % 13),
                "cost": f"{(n + 1) * (model_index + 2)}.{n:02d}",
            }
            if failed:  # served nothing, so it costs nothing (a provider would report no cost)
                del record["cost"]
                record |= {"status_code": 429, "error": {"type": "rate_limit_exceeded", "message": "slow down"}}
            elif estimated:
                record |= {"context_bytes": 4000 + n, "output_bytes": 400}
            else:
                record["usage"] = {
                    "prompt_tokens": 1000 + 13 * n,
                    "completion_tokens": 200 + 7 * n,
                    "prompt_tokens_details": {"cached_tokens": 100 * (n % 3)},
                }
            records.append(record)
    return records


def expected_by_model(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Totals per model as a person would add them up from the records (estimated tokens
    come from the stored records: only the estimator knows them)."""
    stored = {r.request_id: r for r in UsageRecord.objects.all()}
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        row = out.setdefault(
            r["model"],
            {"requests": 0, "errors": 0, "prompt": 0, "completion": 0, "cached": 0, "cost": Decimal(0), "estimated": 0},
        )
        row["requests"] += 1
        row["errors"] += r.get("status_code", 200) >= 400
        row["cost"] += Decimal(r.get("cost", 0))
        if "usage" in r:
            row["prompt"] += r["usage"]["prompt_tokens"]
            row["completion"] += r["usage"]["completion_tokens"]
            row["cached"] += r["usage"]["prompt_tokens_details"]["cached_tokens"]
        elif "context_bytes" in r:
            estimate = stored[r["request_id"]]
            row["prompt"] += estimate.prompt_tokens
            row["completion"] += estimate.completion_tokens
            row["estimated"] += estimate.prompt_tokens + estimate.completion_tokens
    return out


@pytest.fixture
def records(account) -> list[dict[str, Any]]:
    records = build_records()
    ingest(account, records)
    return records


def html(response) -> str:
    return response.content.decode()


def row_of(page: str, model: str) -> str:
    match = re.search(
        rf'<tr>\s*<th scope="row" class="table__key"><a [^>]*>{re.escape(model)}</a></th>(.*?)</tr>', page, re.S
    )
    assert match, f"no row for {model}"
    return match.group(1)


def cells(row_html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row_html, re.S)]


def models_in_order(page: str) -> list[str]:
    return re.findall(r'<th scope="row" class="table__key"><a [^>]*>([^<]+)</a></th>', page)


# --- The table ----------------------------------------------------------------------------


def test_each_model_row_shows_the_totals_of_its_recorded_requests(engineer_client, records):
    expected = expected_by_model(records)
    whole = sum(row["cost"] for row in expected.values())

    page = html(engineer_client.get(reverse("usage:models")))

    for model, e in expected.items():
        requests, prompt, completion, cached, cost, share, per_request, error_rate, estimated = cells(
            row_of(page, model)
        )
        assert requests == f"{e['requests']:,}"
        assert prompt == f"{e['prompt']:,}"
        assert completion == f"{e['completion']:,}"
        assert cached == f"{e['cached']:,}"
        assert cost == f"{e['cost']:,.2f}"
        assert share == f"{e['cost'] / whole * 100:.1f}%"
        assert per_request == f"{round((e['prompt'] + e['completion']) / e['requests']):,}"
        assert error_rate == f"{e['errors'] / e['requests'] * 100:.1f}%"
        assert estimated == f"{e['estimated'] / (e['prompt'] + e['completion']) * 100:.1f}%"
    assert text_by_id(page, "models-usage-value") == f"{whole:,.2f}"


def test_the_table_is_sorted_by_cost_by_default_and_by_any_column_both_ways(engineer_client, records):
    expected = expected_by_model(records)
    by_cost = sorted(expected, key=lambda m: expected[m]["cost"], reverse=True)
    by_requests = sorted(expected, key=lambda m: expected[m]["requests"])
    url = reverse("usage:models")

    assert models_in_order(html(engineer_client.get(url))) == by_cost
    assert models_in_order(html(engineer_client.get(url, {"sort": "requests"}))) == by_requests
    assert models_in_order(html(engineer_client.get(url, {"sort": "-requests"}))) == by_requests[::-1]
    assert models_in_order(html(engineer_client.get(url, {"sort": "-model"}))) == sorted(MODELS, reverse=True)


def test_a_sort_header_links_to_the_reverse_order_and_keeps_the_other_filters(engineer_client, records):
    page = html(engineer_client.get(reverse("usage:models"), {"sort": "-requests", "q": "gpt", "period": "7d"}))

    header = re.search(
        r'<th scope="col" class="num" aria-sort="descending">\s*<a class="sort-link" href="([^"]+)"', page
    )
    assert header is not None
    link = header.group(1).replace("&amp;", "&")
    assert "sort=requests" in link and "q=gpt" in link and "period=7d" in link


def test_an_unknown_sort_shows_the_default_order_with_a_notice_not_an_error(engineer_client, records):
    expected = expected_by_model(records)

    response = engineer_client.get(reverse("usage:models"), {"sort": "-nonsense"})

    assert response.status_code == 200
    assert "Unknown sort" in html(response)
    assert models_in_order(html(response)) == sorted(expected, key=lambda m: expected[m]["cost"], reverse=True)


def test_the_model_filter_keeps_only_matching_models(engineer_client, records):
    page = html(engineer_client.get(reverse("usage:models"), {"q": "MINI"}))

    assert models_in_order(page) == ["gpt-4o-mini"]


def test_htmx_asking_for_the_table_gets_only_the_table_and_fresh_filter_state(engineer_client, records):
    response = engineer_client.get(
        reverse("usage:models"), {"q": "llama", "sort": "model"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="models-table"
    )

    page = html(response)
    assert "<html" not in page and 'id="models-filter"' not in page
    assert models_in_order(page) == [SLASHED]
    # The period picker and the filter's hidden state come along out of band, carrying the new query.
    assert 'id="period-picker" hx-swap-oob="true"' in page
    assert '<input type="hidden" name="q" value="llama">' in page
    assert 'id="models-filter-state" hx-swap-oob="true"' in page
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_htmx_changing_the_period_gets_the_whole_body_without_the_layout(engineer_client, records):
    page = html(engineer_client.get(reverse("usage:models"), {"period": "7d"}, HTTP_HX_REQUEST="true"))

    assert "<html" not in page
    assert 'id="models-filter"' in page and 'id="models-table"' in page
    assert "hx-swap-oob" not in page


def test_a_shorter_period_counts_only_its_days(engineer_client, records):
    tz = dashboard_tz()
    today = timezone.localdate(timezone=tz)
    expected = expected_by_model(
        [r for r in records if datetime.fromisoformat(r["occurred_at"]).astimezone(tz).date() == today]
    )

    page = html(engineer_client.get(reverse("usage:models"), {"period": "today"}))

    assert sorted(models_in_order(page)) == sorted(expected)
    for model, e in expected.items():
        assert cells(row_of(page, model))[0] == f"{e['requests']:,}"


def test_bad_dates_give_the_default_period_with_a_notice(engineer_client, records):
    response = engineer_client.get(reverse("usage:models"), {"period": "custom", "start": "2025-13-45", "end": "x"})

    assert response.status_code == 200
    assert "dates were not understood" in html(response)
    assert response.context["period"].preset == "30d"


# --- One model -----------------------------------------------------------------------------


def test_a_model_name_with_slashes_and_dots_has_its_own_page(engineer_client, records):
    expected = expected_by_model(records)[SLASHED]
    url = reverse("usage:model_detail", args=[SLASHED])

    response = engineer_client.get(url)

    assert url == "/models/vendor/llama-3.1.70b/"
    assert response.status_code == 200
    page = html(response)
    assert f"{expected['cost']:,.2f}" in page
    assert f"{expected['requests']:,}" in page
    # Each card is loaded on its own, with a plain link for browsers without JavaScript.
    for card in ("usage", "latency", "errors", "top", "recent", "estimator"):
        card_url = reverse("usage:model_card", args=[SLASHED, card])
        assert f'hx-get="{card_url}' in page
        assert f'<a href="{card_url}' in page


def test_the_models_table_links_to_each_models_page(engineer_client, records):
    page = html(engineer_client.get(reverse("usage:models"), {"period": "7d"}))

    assert f'href="{reverse("usage:model_detail", args=[SLASHED])}?period=7d"' in page


def test_a_model_never_seen_is_a_404(engineer_client, records):
    assert engineer_client.get(reverse("usage:model_detail", args=["no-such-model"])).status_code == 404
    assert engineer_client.get(reverse("usage:model_card", args=["gpt-4o", "nonsense"])).status_code == 404


@pytest.mark.parametrize("card", ["usage", "latency", "errors", "top", "recent", "estimator"])
def test_each_card_answers_htmx_with_the_card_alone_and_a_browser_with_a_page(engineer_client, records, card):
    url = reverse("usage:model_card", args=["gpt-4o", card])

    fragment = html(engineer_client.get(url, HTTP_HX_REQUEST="true"))
    page = html(engineer_client.get(url))

    assert fragment.lstrip().startswith(("{% load", "<section")) and "<html" not in fragment
    assert f'id="card-{card}"' in fragment
    assert "<html" in page and f'id="card-{card}"' in page


def test_the_latency_card_shows_nearest_rank_percentiles_of_the_period_within_one_percent(engineer_client, records):
    """Read from the latency histogram: the nearest-rank percentile's bucket, within 1% of it."""
    latencies = sorted(r["latency_ms"] for r in records if r["model"] == "gpt-4o-mini")

    def nearest_rank(fraction: float) -> int:
        return latencies[math.ceil(fraction * len(latencies)) - 1]

    page = html(engineer_client.get(reverse("usage:model_card", args=["gpt-4o-mini", "latency"])))

    for name, fraction in (("p50", 0.5), ("p95", 0.95)):
        shown = int(re.search(rf'id="latency-{name}">([^<]+) ms<', page).group(1).replace(",", ""))
        exact = nearest_rank(fraction)
        assert shown == latency.value_of(latency.bucket_of(exact))
        assert abs(shown - exact) <= exact * latency.RELATIVE_ACCURACY
    assert f"over {len(latencies)} timed requests" in page
    assert "within 1%" in page


def test_the_errors_card_counts_the_models_failures_and_links_to_them(engineer_client, records):
    failed = [r for r in records if r["model"] == SLASHED and r.get("status_code") == 429]

    page = html(engineer_client.get(reverse("usage:model_card", args=[SLASHED, "errors"])))

    assert "Rate limited" in page
    assert f'<td class="num">{len(failed)}</td>' in page
    assert "error_cause=rate_limited" in page and "model=vendor%2Fllama-3.1.70b" in page


def test_the_top_card_ranks_the_models_keys_and_teams_by_spend(engineer_client, records):
    spend: dict[str, Decimal] = {}
    for r in records:
        if r["model"] == "gpt-4o":
            spend[r["metadata"]["team"]] = spend.get(r["metadata"]["team"], Decimal(0)) + Decimal(r.get("cost", 0))

    page = html(engineer_client.get(reverse("usage:model_card", args=["gpt-4o", "top"])))

    teams = page.split('aria-label="Top teams"')[1]
    ranked = re.findall(r'<th scope="row" class="table__key">([^<]+)</th>', teams)
    assert ranked == sorted(spend, key=lambda team: spend[team], reverse=True)
    for amount in spend.values():
        assert f"{amount:,.2f}" in teams


def test_the_recent_card_links_the_newest_requests_to_their_detail(engineer_client, records):
    newest = max((r for r in records if r["model"] == "gpt-4o"), key=lambda r: r["occurred_at"])
    pk = UsageRecord.objects.get(request_id=newest["request_id"]).pk

    page = html(engineer_client.get(reverse("usage:model_card", args=["gpt-4o", "recent"])))

    first_link = re.search(r'href="(/requests/\d+/)"', page).group(1)
    assert first_link == reverse("usage:request_detail", args=[pk])


def test_the_estimator_card_shows_the_measured_error_of_the_fit_the_model_uses(engineer_client, records):
    EstimatorFit.objects.create(
        scope="gpt-4o",
        kind=EstimatorFit.Kind.PROFILE,
        weights={},
        samples=400,
        holdout_samples=97,
        median_error=0.026,
        p90_error=0.1,
        fallback_median_error=0.12,
        fallback_p90_error=0.28,
        active=True,
    )

    calibrated = html(engineer_client.get(reverse("usage:model_card", args=["gpt-4o", "estimator"])))
    uncalibrated = html(engineer_client.get(reverse("usage:model_card", args=["gpt-4o-mini", "estimator"])))

    assert "2.6%" in calibrated and "10.0%" in calibrated and "12.0% / 28.0%" in calibrated and ">97<" in calibrated
    assert "No calibrated fit covers this model" in uncalibrated


# --- Who may look ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        reverse("usage:models"),
        reverse("usage:model_detail", args=["gpt-4o"]),
        reverse("usage:model_card", args=["gpt-4o", "usage"]),
    ],
)
def test_finance_may_not_open_the_model_pages(finance_client, records, url):
    assert finance_client.get(url).status_code == 403
