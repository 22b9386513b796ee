"""Money paid beside usage value: plan-covered tokens at each purchase's effective rate plus
wallet charges, summed per model, key, team and day, in /api/v1/usage/summary, the Overview
and the monthly statement with its CSV. Unpriced requests are a state, never a zero.

Expected figures are worked out here from the purchases and records the tests put in."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from tests.billing.conftest import allocate, buy, ingest, record, top_up
from tests.surfaces import text_by_id
from usage.models import Account, TokenScope
from usage.services import create_api_token

MARCH = "2026-03"
PLAN_PRICE, PLAN_TOKENS = Decimal("20.00"), 1_000_000  # 0.00002 per token
RATE = PLAN_PRICE / PLAN_TOKENS


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


@pytest.fixture
def march(account: Account) -> dict:
    """A GPT plan, a top-up, GPT traffic on the plan, Claude traffic on the wallet and an
    unpriced model the wallet cannot value; with the figures each surface must show."""
    buy(account, "gpt-plan", PLAN_TOKENS, at(1, 0), at(31), models=["gpt-4o*"], price=str(PLAN_PRICE))
    top_up(account, "t", "50.00", at(1, 0))
    ingest(
        account,
        record("g1", at(2), "gpt-4o", 6_000, 2_000, "0.0350", api_key="search-key", metadata={"team": "search"}),
        record("g2", at(3), "gpt-4o", 1_500, 500, "0.0125", api_key="bot-key", metadata={"team": "support"}),
        record("c1", at(4), "claude-3-5-sonnet", 3_000, 1_000, "0.0240", api_key="bot-key"),
        record("u1", at(5), "mystery-model", 700, 300, None, api_key="bot-key", metadata={"team": "support"}),
    )
    allocate(account, at(31, 23))
    gpt_paid = Decimal(10_000) * RATE
    return {
        "value": {"gpt-4o": Decimal("0.0475"), "claude-3-5-sonnet": Decimal("0.0240")},
        "paid": {"gpt-4o": gpt_paid, "claude-3-5-sonnet": Decimal("0.0240")},
        "total_value": Decimal("0.0715"),
        "total_paid": gpt_paid + Decimal("0.0240"),
    }


@pytest.fixture
def reader(account: Account) -> Client:
    token = create_api_token(account=account, name="reader", scopes=[TokenScope.READ])[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def summary(reader: Client, group_by: str) -> dict:
    response = reader.get("/api/v1/usage/summary", {"start": "2026-03-01", "end": "2026-03-31", "group_by": group_by})
    assert response.status_code == 200, response.content
    return response.json()


def test_the_summary_carries_paid_beside_the_usage_value_and_counts_unpriced_requests(reader: Client, march: dict):
    body = summary(reader, "model")
    rows = {row["key"]: row for row in body["rows"]}

    for model in ("gpt-4o", "claude-3-5-sonnet"):
        assert Decimal(rows[model]["cost"]) == march["value"][model]
        assert Decimal(rows[model]["paid"]) == march["paid"][model]
        assert rows[model]["unpriced_requests"] == 0
    assert rows["mystery-model"]["unpriced_requests"] == 1
    assert Decimal(rows["mystery-model"]["cost"]) == 0  # nothing priced: the count says why
    assert Decimal(body["total"]["cost"]) == march["total_value"]
    assert Decimal(body["total"]["paid"]) == march["total_paid"]
    assert body["total"]["unpriced_requests"] == 1


@pytest.mark.parametrize("group_by", ["api_key", "team", "day"])
def test_paid_adds_up_to_the_same_total_by_every_dimension(reader: Client, march: dict, group_by: str):
    body = summary(reader, group_by)

    assert sum(Decimal(row["paid"]) for row in body["rows"]) == march["total_paid"]
    assert sum(row["unpriced_requests"] for row in body["rows"]) == 1
    assert Decimal(body["total"]["paid"]) == march["total_paid"]


def test_paid_by_day_falls_on_the_days_the_tokens_were_used(reader: Client, march: dict):
    rows = {row["key"]: row for row in summary(reader, "day")["rows"]}

    assert Decimal(rows["2026-03-02"]["paid"]) == Decimal(8_000) * RATE
    assert Decimal(rows["2026-03-04"]["paid"]) == Decimal("0.0240")


def test_a_plan_bought_in_another_currency_is_not_convertible_rather_than_free(reader: Client, account: Account):
    buy(account, "cny-plan", 100_000, at(1, 0), at(31), models=["qwen-*"], price="70.00", currency="CNY")
    ingest(account, record("q1", at(6), "qwen-max", 4_000, 1_000, "0.0300"))
    allocate(account, at(31, 23))

    body = summary(reader, "model")
    (row,) = body["rows"]

    assert row["paid_not_converted"] == {"CNY": "3.5"}  # 5,000 tokens at 70.00 CNY per 100,000
    assert Decimal(row["paid"]) == 0
    assert body["total"]["paid_not_converted"] == {"CNY": "3.5"}


# --- The monthly statement and its CSV ------------------------------------------------------------


def statement_csv(client: Client) -> list[dict[str, str]]:
    response = client.get(reverse("billing:report_csv", args=[MARCH]))
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_the_csv_carries_usage_value_and_paid_rounded_with_the_exact_amounts_beside(
    finance_client: Client, march: dict
):
    rows = statement_csv(finance_client)
    (gpt,) = [r for r in rows if r["section"] == "model" and r["key"] == "gpt-4o"]
    (total,) = [r for r in rows if r["section"] == "total"]

    assert gpt["usage_value"] == "0.05" and Decimal(gpt["usage_value_exact"]) == march["value"]["gpt-4o"]
    assert gpt["paid"] == "0.20" and Decimal(gpt["paid_exact"]) == march["paid"]["gpt-4o"]
    assert Decimal(total["usage_value_exact"]) == march["total_value"]
    assert Decimal(total["paid_exact"]) == march["total_paid"]
    assert total["unpriced_requests"] == "1"
    for row in rows:  # money never shows more digits than the currency has
        for column in ("usage_value", "paid"):
            assert row[column] == "unpriced" or re.fullmatch(r"-?\d+\.\d{2}", row[column]), row


def test_an_unpriced_model_is_unpriced_in_the_csv_not_zero(finance_client: Client, march: dict):
    (mystery,) = [r for r in statement_csv(finance_client) if r["section"] == "model" and r["key"] == "mystery-model"]

    assert mystery["usage_value"] == "unpriced"
    assert mystery["usage_value_exact"] == ""
    assert mystery["unpriced_requests"] == "1"


def row_html(html: str, section: str, key: str) -> str:
    table = re.search(rf'id="statement-{section}".*?</table>', html, re.S)
    assert table
    for row in re.findall(r"<tr.*?</tr>", table.group(0), re.S):
        if re.search(rf">\s*{re.escape(key)}\s*<", row):
            return row
    raise AssertionError(f"no row {key} in {section}")


def test_the_statement_shows_an_unpriced_model_as_unpriced_with_a_link_to_price_it(admin_client: Client, march: dict):
    html = admin_client.get(reverse("billing:reports"), {"month": MARCH}).content.decode()
    row = row_html(html, "model", "mystery-model")

    assert "unpriced" in row
    assert f"{reverse('usage:prices')}?model=mystery-model" in row
    assert "0.00" not in row and ">0%<" not in row
    assert "excludes 1 unpriced request" in html


def test_the_statement_labels_usage_value_and_paid_and_shows_the_savings(finance_client: Client, march: dict):
    html = finance_client.get(reverse("billing:reports"), {"month": MARCH}).content.decode()
    html = html[html.index("<main") :]  # the menu's "Spend" names a page, not a figure

    assert "Usage value" in html and "Paid" in html and "Spend" not in html
    assert f"{march['total_paid']:.2f}" in re.sub(r"\s+", " ", html)
    savings = march["total_value"] - march["total_paid"]
    # Negative savings (plans dearer than list price) are said in words, never as "savings -0.15".
    assert text_by_id(html, "statement-savings") == f"{abs(savings):.2f}"
    words = "over usage value" if savings < 0 else "Plan savings"
    assert words in " ".join(html.split())


def test_the_overview_shows_usage_value_and_paid_for_the_period(finance_client: Client, reader: Client, march: dict):
    html = finance_client.get(
        reverse("usage:overview"), {"period": "custom", "start": "2026-03-01", "end": "2026-03-31"}
    ).content.decode()
    total = summary(reader, "model")["total"]

    assert re.search(r'id="overview-usage-value"[^>]*>\s*' + re.escape(f"{Decimal(total['cost']):.2f}"), html)
    assert re.search(r'id="overview-paid"[^>]*>\s*' + re.escape(f"{Decimal(total['paid']):.2f}"), html)
    assert "excludes 1 unpriced request" in html


def test_paid_of_an_expired_plan_is_kept_and_tokens_expired_unused_have_a_money_value(
    finance_client: Client, account: Account
):
    buy(account, "short", 10_000, at(1, 0), at(10, 0), price="5.00")
    ingest(account, record("s1", at(2), "gpt-4o", 3_000, 1_000, "0.0200"))
    allocate(account, at(31, 23))

    html = finance_client.get(reverse("billing:reports"), {"month": MARCH}).content.decode()

    # 6,000 tokens expired unused, paid at 5.00 per 10,000 tokens.
    assert re.search(r'id="statement-expired-value"[^>]*>\s*3\.00', html)
