"""The monthly statement page and its CSV, over HTTP.

Expectations are summed here from the records the tests ingest; the page reads the
hourly rollups, so agreement means the rollups and the page both add up.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.test import Client
from django.urls import reverse

from billing.views.reports import last_complete_month
from tests.billing.conftest import allocate, buy, ingest, record, top_up
from usage.models import Account

REPORTS = reverse("billing:reports")
MARCH = "2026-03"

# (request id, time, model, key, team, prompt, completion, cost)
TRAFFIC = [
    ("m1", datetime(2026, 3, 2, 10, tzinfo=UTC), "gpt-4o", "prod-backend", "search", 1_000, 200, "0.0450"),
    ("m2", datetime(2026, 3, 5, 11, tzinfo=UTC), "gpt-4o", "data-pipeline", "data", 2_500, 700, "0.1325"),
    ("m3", datetime(2026, 3, 9, 12, tzinfo=UTC), "gpt-4o-mini", "prod-backend", "search", 8_000, 1_500, "0.0021"),
    ("m4", datetime(2026, 3, 17, 8, tzinfo=UTC), "claude-3-5-sonnet", "support-bot", "", 3_100, 900, "1.2000"),
    ("m5", datetime(2026, 3, 31, 23, tzinfo=UTC), "deepseek-chat", "", "data", 4_000, 1_000, "0.0099"),
    # Outside March: February and April must not count.
    ("f1", datetime(2026, 2, 28, 23, tzinfo=UTC), "gpt-4o", "prod-backend", "search", 9_999, 9_999, "9.0000"),
    ("a1", datetime(2026, 4, 1, 0, tzinfo=UTC), "gpt-4o", "prod-backend", "search", 7_777, 7_777, "7.0000"),
]
IN_MARCH = [row for row in TRAFFIC if row[1].month == 3]


def _ingest(account: Account) -> None:
    bodies = []
    for request_id, when, model, key, team, prompt, completion, cost in TRAFFIC:
        extra: dict = {}
        if key:
            extra["api_key"] = f"name:{key}"
        if team:
            extra["metadata"] = {"team": team}
        bodies.append(record(request_id, when, model, prompt, completion, cost, **extra))
    ingest(account, *bodies)


def expected_by(column: int) -> dict[str, dict[str, Decimal | int]]:
    groups: dict[str, dict] = defaultdict(lambda: {"requests": 0, "tokens": 0, "cost": Decimal(0)})
    for row in IN_MARCH:
        group = groups[row[column]]
        group["requests"] += 1
        group["tokens"] += row[5] + row[6]
        group["cost"] += Decimal(row[7])
    return dict(groups)


def shown_money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)<', html, re.S)
    assert match, f"no element {element_id}"
    return match.group(1).strip()


@pytest.fixture
def march(account: Account) -> Account:
    _ingest(account)
    return account


@pytest.mark.parametrize(("column", "section"), [(2, "model"), (3, "key"), (4, "team")])
def test_the_statement_sums_requests_tokens_and_spend_per_model_key_and_team(
    finance_client: Client, march: Account, column: int, section: str
):
    response = finance_client.get(REPORTS, {"month": MARCH})

    statement = response.context["statement"]
    rows = dict(statement.sections)[section]
    shown = {
        row.key: {"requests": row.totals.requests, "tokens": row.totals.tokens, "cost": row.totals.cost} for row in rows
    }
    assert shown == expected_by(column)
    html = response.content.decode()
    card = html[html.index(f'id="statement-{section}"') :].split("</section>")[0]
    for key, figures in expected_by(column).items():
        assert (key or "(no ") in card
        assert shown_money(figures["cost"]) in card


def test_the_statement_totals_cover_only_the_month(finance_client: Client, march: Account):
    html = finance_client.get(REPORTS, {"month": MARCH}).content.decode()

    assert text_of(html, "statement-requests") == f"{len(IN_MARCH):,}"
    assert text_of(html, "statement-tokens") == f"{sum(r[5] + r[6] for r in IN_MARCH):,}"
    assert text_of(html, "statement-usage-value") == shown_money(sum((Decimal(r[7]) for r in IN_MARCH), Decimal(0)))
    assert "March 2026" in text_of(html, "statement-month")


def test_months_are_calendar_months_in_the_dashboard_time_zone(finance_client: Client, march: Account, settings):
    # In Tokyo (UTC+9) the last record of 28 February UTC is already 1 March, and the
    # record of 31 March 23:00 UTC is 1 April.
    settings.DASHBOARD_TIME_ZONE = "Asia/Tokyo"

    statement = finance_client.get(REPORTS, {"month": MARCH}).context["statement"]

    in_tokyo_march = [
        r
        for r in TRAFFIC
        if r[1] + timedelta(hours=9) >= datetime(2026, 3, 1, tzinfo=UTC)
        and r[1] + timedelta(hours=9) < datetime(2026, 4, 1, tzinfo=UTC)
    ]
    assert {r[0] for r in in_tokyo_march} == {"f1", "m1", "m2", "m3", "m4"}
    assert statement.total.totals.requests == len(in_tokyo_march)
    assert statement.total.totals.cost == sum((Decimal(r[7]) for r in in_tokyo_march), Decimal(0))


def test_the_default_month_is_the_last_complete_one(finance_client: Client, account: Account):
    response = finance_client.get(REPORTS)

    assert response.context["month"] == last_complete_month()
    assert last_complete_month(date(2026, 1, 15)) == date(2025, 12, 1)
    assert last_complete_month(date(2026, 3, 1)) == date(2026, 2, 1)


def test_the_statement_csv_parses_and_its_totals_equal_the_page(finance_client: Client, march: Account):
    page = finance_client.get(REPORTS, {"month": MARCH}).content.decode()
    response = finance_client.get(reverse("billing:report_csv", args=[MARCH]))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    (total,) = [r for r in rows if r["section"] == "total"]
    for section in ("model", "key", "team"):
        lines = [r for r in rows if r["section"] == section]
        assert sum(Decimal(r["usage_value_exact"]) for r in lines) == Decimal(total["usage_value_exact"])
        assert sum(int(r["tokens"]) for r in lines) == int(total["tokens"])
        assert sum(int(r["requests"]) for r in lines) == int(total["requests"])
    assert shown_money(Decimal(total["usage_value_exact"])) == text_of(page, "statement-usage-value")
    assert total["usage_value"] == shown_money(Decimal(total["usage_value_exact"]))
    assert f"{int(total['tokens']):,}" == text_of(page, "statement-tokens")
    assert f"{int(total['requests']):,}" == text_of(page, "statement-requests")
    assert {r["key"] for r in rows if r["section"] == "model"} == {r[2] for r in IN_MARCH}


def test_a_name_that_looks_like_a_formula_is_quoted_in_the_csv(finance_client: Client, account: Account):
    ingest(account, record("x", datetime(2026, 3, 3, tzinfo=UTC), "=HYPERLINK(1)", 10, 10, "0.01"))

    rows = list(
        csv.DictReader(io.StringIO(finance_client.get(reverse("billing:report_csv", args=[MARCH])).content.decode()))
    )

    assert [r["key"] for r in rows if r["section"] == "model"] == ["'=HYPERLINK(1)"]


def test_plan_and_wallet_consumption_of_the_month(finance_client: Client, account: Account):
    start = datetime(2026, 2, 20, tzinfo=UTC)
    purchase_id = buy(account, "gpt-pack", 3_000, start, datetime(2026, 3, 10, tzinfo=UTC), models=["gpt-4o"])
    top_up(account, "feb", "50.00", start)
    top_up(account, "mar", "20.00", datetime(2026, 3, 15, tzinfo=UTC))
    ingest(
        account,
        record("feb-1", datetime(2026, 2, 25, tzinfo=UTC), "gpt-4o", 800, 200, "0.10"),
        record("mar-1", datetime(2026, 3, 2, tzinfo=UTC), "gpt-4o", 1_000, 500, "0.20"),
        record("mar-2", datetime(2026, 3, 20, tzinfo=UTC), "claude-3-5-sonnet", 100, 100, "0.75"),
    )
    allocate(account, datetime(2026, 4, 2, tzinfo=UTC))

    response = finance_client.get(REPORTS, {"month": MARCH})

    c = response.context["statement"].consumption
    assert [(p.purchase_id, p.tokens) for p in c.plans] == [(purchase_id, 1_500)]
    assert c.expired_tokens == 3_000 - 1_000 - 1_500  # left when it expired on 10 March
    assert c.wallet.opening == Decimal("50.00")
    assert c.wallet.top_ups == Decimal("20.00")
    assert c.wallet.usage_charges == Decimal("-0.75")
    assert c.wallet.closing == Decimal("50.00") + Decimal("20.00") - Decimal("0.75")
    assert text_of(response.content.decode(), "statement-closing") == "69.25"


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "1999-12"])
def test_a_bad_month_in_the_csv_url_is_a_404(finance_client: Client, account: Account, month: str):
    assert finance_client.get(f"/reports/{month}.csv").status_code == 404


@pytest.mark.parametrize("month", ["2026-13", "march", "2026-3", "'; drop table", "9999-12"])
def test_a_bad_month_in_the_query_shows_a_message_and_the_default_month(
    finance_client: Client, account: Account, month: str
):
    response = finance_client.get(REPORTS, {"month": month})

    assert response.status_code == 400
    assert "is not a month" in response.content.decode()
    assert response.context["month"] == last_complete_month()


def test_engineers_cannot_download_statements(engineer_client: Client, account: Account):
    assert engineer_client.get(reverse("billing:report_csv", args=[MARCH])).status_code == 403


def test_without_any_account_the_pages_say_so_and_the_csv_is_a_404(finance_client: Client, db):
    assert "No TOKI account yet" in finance_client.get(REPORTS).content.decode()
    assert "No TOKI account yet" in finance_client.get(reverse("billing:plans")).content.decode()
    assert finance_client.get(reverse("billing:report_csv", args=[MARCH])).status_code == 404
    assert finance_client.get(reverse("billing:balance_card")).status_code == 200


def _statement_row(html: str, section: str, key: str) -> str:
    card = html[html.index(f'id="statement-{section}"') :].split("</section>")[0]
    return card[card.index(f'data-key="{key}"') :].split("</tr>")[0]


@pytest.mark.parametrize(("column", "section"), [(2, "model"), (3, "key"), (4, "team")])
def test_each_row_shows_its_change_against_the_previous_month(
    finance_client: Client, march: Account, column: int, section: str
):
    response = finance_client.get(REPORTS, {"month": MARCH})

    rows = dict((name, rows) for name, _, _, _, rows in response.context["sections"])[section]
    february: dict[str, Decimal] = defaultdict(Decimal)
    for row in TRAFFIC:
        if row[1].month == 2:
            february[row[column]] += Decimal(row[7])
    assert {r.key: r.previous.totals.cost for r in rows if r.previous} == {
        key: value for key, value in february.items() if key in expected_by(column)
    }
    html = response.content.decode()
    for key, figures in expected_by(column).items():
        cell = _statement_row(html, section, key)
        cell = cell[cell.index('data-change="usage-value"') :].split("</td>")[0]
        if key in february:
            points = (figures["cost"] - february[key]) / february[key] * 100
            change = points.quantize(Decimal("0.1") if abs(points) < 100 else Decimal("1"), ROUND_HALF_UP)
            assert f"{'+' if change > 0 else ''}{change:,}%" in cell
        else:
            assert "new" in cell


def test_each_row_links_to_its_detail_for_the_month(finance_client: Client, engineer_client, march: Account):
    html = finance_client.get(REPORTS, {"month": MARCH}).content.decode()
    month = "period=custom&amp;start=2026-03-01&amp;end=2026-03-31"

    assert f'href="{reverse("usage:spend")}?{month}&amp;team=search"' in _statement_row(html, "team", "search")
    assert f'href="{reverse("usage:spend")}?{month}&amp;key=support-bot"' in _statement_row(html, "key", "support-bot")
    assert f'href="{reverse("usage:spend")}?{month}&amp;model=gpt-4o"' in _statement_row(html, "model", "gpt-4o")


def test_the_next_month_link_stops_at_the_current_month(finance_client: Client, account: Account):
    this_month = last_complete_month().replace(day=28) + timedelta(days=4)
    previous = finance_client.get(REPORTS, {"month": f"{last_complete_month():%Y-%m}"}).content.decode()
    current = finance_client.get(REPORTS, {"month": f"{this_month:%Y-%m}"}).content.decode()

    assert f'href="?month={this_month:%Y-%m}"' in previous
    assert 'id="next-month"' not in current


def test_a_future_month_says_it_has_not_started_and_shows_the_current_one(finance_client: Client, account: Account):
    this_month = (last_complete_month().replace(day=28) + timedelta(days=4)).replace(day=1)
    future = (this_month.replace(day=28) + timedelta(days=4 + 31 * 5)).replace(day=1)

    response = finance_client.get(REPORTS, {"month": f"{future:%Y-%m}"})

    assert response.status_code == 400
    assert f"{future:%B %Y} has not started yet" in response.content.decode()
    assert response.context["month"] == this_month
