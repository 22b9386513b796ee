"""The Spend page: usage value, paid and tokens by team, key and model for a period, each with
its change against the compared period, for finance and engineers; filters by one group.

Expected figures are summed here from the records the tests ingest."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.test import Client
from django.urls import reverse

from tests.billing.conftest import allocate, buy, ingest, record
from usage import money
from usage.models import Account
from usage.periods import Period
from usage.selectors import NO_TEAM

SPEND = reverse("usage:spend")
MARCH = {"period": "custom", "start": "2026-03-01", "end": "2026-03-31"}

# (request id, time, model, key, team, prompt, completion, cost)
TRAFFIC = [
    ("f1", datetime(2026, 2, 3, 10, tzinfo=UTC), "gpt-4o", "prod-backend", "search", 1_000, 200, "0.0400"),
    ("f2", datetime(2026, 2, 9, 10, tzinfo=UTC), "gpt-4o-mini", "data-pipeline", "data", 4_000, 800, "0.3000"),
    ("m1", datetime(2026, 3, 2, 10, tzinfo=UTC), "gpt-4o", "prod-backend", "search", 1_000, 200, "0.0600"),
    ("m2", datetime(2026, 3, 5, 11, tzinfo=UTC), "gpt-4o", "data-pipeline", "data", 2_500, 700, "0.1325"),
    ("m3", datetime(2026, 3, 9, 12, tzinfo=UTC), "gpt-4o-mini", "prod-backend", "search", 8_000, 1_500, "0.0021"),
    ("m4", datetime(2026, 3, 17, 8, tzinfo=UTC), "claude-3-5-sonnet", "support-bot", "", 3_100, 900, "1.2000"),
]


def in_month(month: int) -> list[tuple]:
    return [row for row in TRAFFIC if row[1].month == month]


def cost_by(rows: list[tuple], column: int) -> dict[str, Decimal]:
    found: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        found[row[column]] += Decimal(row[7])
    return dict(found)


@pytest.fixture
def traffic(account: Account) -> Account:
    buy(account, "pack", 5_000, datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC), price="5")
    ingest(
        account,
        *[
            record(rid, when, model, p, c, cost, api_key=f"name:{key}", metadata={"team": team} if team else {})
            for rid, when, model, key, team, p, c, cost in TRAFFIC
        ],
    )
    allocate(account, datetime(2026, 4, 2, tzinfo=UTC))
    return account


def section(response, name: str) -> list[money.Compared]:
    return next(s["rows"] for s in response.context["sections"] if s["name"] == name)


@pytest.mark.parametrize(("column", "name"), [(4, "team"), (3, "key"), (2, "model")])
def test_finance_reads_usage_value_and_its_change_per_team_key_and_model(
    finance_client: Client, traffic: Account, column: int, name: str
):
    response = finance_client.get(SPEND, MARCH)

    assert response.status_code == 200
    rows = section(response, name)
    march, february = cost_by(in_month(3), column), cost_by(in_month(2), column)
    assert {r.key: r.row.totals.cost for r in rows} == march
    assert {r.key: r.previous.totals.cost for r in rows if r.previous} == {
        k: v for k, v in february.items() if k in march
    }
    assert [r.key for r in rows] == sorted(march, key=lambda k: -march[k])  # by usage value


def test_paid_per_team_is_what_the_statement_reads(finance_client: Client, traffic: Account):
    response = finance_client.get(SPEND, MARCH)

    period = Period.from_query(MARCH)
    expected, _ = money.summary(account=traffic, period=period, group_by="team")
    assert {r.key: r.row.paid for r in section(response, "team")} == {r.key: r.paid for r in expected}
    assert any(r.row.paid and r.row.paid.amount for r in section(response, "team"))


def test_the_change_column_shows_the_rise_against_the_compared_month(finance_client: Client, traffic: Account):
    html = finance_client.get(SPEND, MARCH).content.decode()

    search = html[html.index('data-team="search"') :].split("</tr>")[0]
    cell = search[search.index('data-change="usage-value"') :].split("</td>")[0]
    before, after = cost_by(in_month(2), 4)["search"], cost_by(in_month(3), 4)["search"]
    change = ((after - before) / before * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    assert f"+{change}%" in cell


def test_a_team_row_links_to_the_team_and_the_page_then_shows_its_keys_and_models(
    finance_client: Client, traffic: Account
):
    html = finance_client.get(SPEND, MARCH).content.decode()
    assert "team=search" in html and "start=2026-03-01" in html

    response = finance_client.get(SPEND, MARCH | {"team": "search"})

    names = [s["name"] for s in response.context["sections"]]
    assert names == ["key", "model"]
    searched = [row for row in in_month(3) if row[4] == "search"]
    assert {r.key: r.row.totals.cost for r in section(response, "key")} == cost_by(searched, 3)
    assert response.context["total"].row.totals.cost == sum(cost_by(searched, 3).values())


def test_usage_without_a_team_is_a_row_of_its_own_that_filters(finance_client: Client, traffic: Account):
    response = finance_client.get(SPEND, MARCH | {"team": NO_TEAM})

    assert {r.key for r in section(response, "key")} == {"support-bot"}
    assert "No team" in response.content.decode()


def test_the_keys_technical_columns_stay_on_the_engineers_page(finance_client: Client, traffic: Account):
    html = finance_client.get(SPEND, MARCH).content.decode()

    assert "Latency" not in html and "Last seen" not in html and "key-hint" not in html


def test_engineers_read_the_same_page(engineer_client: Client, traffic: Account):
    assert engineer_client.get(SPEND, MARCH).status_code == 200


def test_without_an_account_the_page_says_so(finance_client: Client, db):
    assert "No TOKI account yet" in finance_client.get(SPEND).content.decode()


def test_overview_top_rows_link_to_their_detail_with_the_period(
    finance_client: Client, engineer_client: Client, traffic: Account
):
    query = "period=custom&amp;start=2026-03-01&amp;end=2026-03-31"

    as_finance = finance_client.get(reverse("usage:overview"), MARCH).content.decode()
    as_engineer = engineer_client.get(reverse("usage:overview"), MARCH).content.decode()

    assert f'href="{SPEND}?{query}&amp;model=gpt-4o"' in as_finance  # finance cannot open a model's page
    assert f'href="{reverse("usage:model_detail", args=["gpt-4o"])}?{query}"' in as_engineer
    assert f'href="{SPEND}?{query}&amp;key=support-bot"' in as_finance
