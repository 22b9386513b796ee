"""The Overview page over HTTP: totals from the rollups, one view for the page and its fragments."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from usage.models import ModelPrice
from usage.periods import Period
from usage.schemas import RecordIn
from usage.services import record_usage

PRICES = {"gpt-4o": (Decimal("2.50"), Decimal("10.00")), "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60"))}


@pytest.fixture
def usage(account):
    """Requests in the last 30 days (and one older), with the expected totals worked out from the inputs."""
    for model, (input_price, output_price) in PRICES.items():
        ModelPrice.objects.create(
            model_pattern=model,
            input_per_mtok=input_price,
            output_per_mtok=output_price,
            currency="USD",
            effective_from=timezone.now() - timedelta(days=400),
        )
    now = timezone.now()
    rows = [
        ("gpt-4o", 1, 1200, 300, 200),
        ("gpt-4o", 2, 800, 100, 200),
        ("gpt-4o-mini", 3, 5000, 2500, 200),
        ("gpt-4o-mini", 4, 0, 0, 429),
        ("gpt-4o", 70, 99_000, 99_000, 200),  # before the default period: not in its totals
    ]
    records = [
        RecordIn(
            request_id=f"r{n}",
            occurred_at=now - timedelta(days=days),
            model=model,
            api_key="sk-team-a",
            status_code=status,
            usage={"prompt_tokens": prompt, "completion_tokens": completion} if status == 200 else None,
        )
        for n, (model, days, prompt, completion, status) in enumerate(rows)
    ]
    record_usage(account, list(enumerate(records)), source="api")
    in_period = [row for row in rows if row[1] < 30 and row[4] == 200]
    expected_cost = sum(
        (Decimal(prompt) * PRICES[model][0] + Decimal(completion) * PRICES[model][1]) / 1_000_000
        for model, _, prompt, completion, _ in in_period
    )
    return {
        "requests": sum(1 for row in rows if row[1] < 30),
        "tokens": sum(prompt + completion for _, _, prompt, completion, _ in in_period),
        "cost": expected_cost,
    }


def test_the_overview_shows_the_period_totals_of_the_stored_records(usage, finance_client):
    response = finance_client.get("/")

    assert response.status_code == 200
    totals = response.context["totals"]
    assert totals.requests == usage["requests"]
    assert totals.tokens == usage["tokens"]
    assert totals.cost == usage["cost"]
    assert totals.errors == 1
    assert f"{usage['tokens']:,}" in response.content.decode()


def test_an_htmx_request_gets_only_the_swapped_region_and_the_answer_varies_on_it(usage, engineer_client):
    page = engineer_client.get("/?period=7d")
    fragment = engineer_client.get("/?period=7d", headers={"HX-Request": "true"})

    assert b"<html" in page.content and b"<html" not in fragment.content
    assert b"Overview" in fragment.content
    assert "HX-Request" in fragment["Vary"] and "HX-Request" in page["Vary"]


def test_the_spend_chart_loads_as_its_own_card_for_the_same_period(usage, finance_client):
    today = timezone.localdate()
    start, end = (today - timedelta(days=9)).isoformat(), today.isoformat()
    page = finance_client.get(f"/?period=custom&start={start}&end={end}").content.decode()
    assert f'hx-get="/overview/spend-chart/?period=custom&amp;start={start}&amp;end={end}"' in page

    card = finance_client.get("/overview/spend-chart/?period=30d", HTTP_HX_REQUEST="true")

    assert card.status_code == 200
    assert "<html" not in card.content.decode()  # htmx gets the card alone
    figure = json.loads(card.content.decode().split(">", 1)[1].split("</script>", 1)[0])
    plotted = {trace["name"]: sum(Decimal(str(y)) for y in trace["y"]) for trace in figure["data"]}
    assert sum(plotted.values()) == pytest.approx(usage["cost"])
    assert set(plotted) == {"gpt-4o", "gpt-4o-mini"}


def test_the_spend_chart_opened_directly_is_a_page_with_the_chart(usage, finance_client):
    page = finance_client.get("/overview/spend-chart/?period=30d").content.decode()

    assert page.lstrip().lower().startswith("<!doctype html>")
    assert 'aria-label="Main"' in page and "<h1" in page
    assert 'data-figure="spend-chart"' in page


def test_the_previous_period_is_the_same_length_just_before(usage, finance_client):
    response = finance_client.get("/?period=7d")
    period: Period = response.context["period"]

    previous = period.previous()
    assert previous.days == period.days == 7
    assert previous.last_day == period.first_day - timedelta(days=1)


def test_a_user_without_a_role_gets_the_403_page_and_no_figures(usage, roleless_client):
    for url in ("/", "/overview/spend-chart/"):
        response = roleless_client.get(url)
        assert response.status_code == 403
        assert f"{usage['tokens']:,}".encode() not in response.content


def test_without_an_account_the_overview_explains_how_to_create_one(finance_client):
    response = finance_client.get("/")

    assert response.status_code == 200
    assert b"create_account" in response.content
    assert finance_client.get("/overview/spend-chart/").status_code == 404


@pytest.mark.parametrize("query", ["period=nonsense", "period=custom&start=yesterday&end=2026-13-45", "start=&end="])
def test_an_unreadable_period_falls_back_to_the_default_instead_of_failing(usage, finance_client, query):
    response = finance_client.get(f"/?{query}")

    assert response.status_code == 200
    assert response.context["period"].preset == "30d"
