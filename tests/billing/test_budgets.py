"""Budgets: what each one has spent this period (read from the rollups), its state, forecast and
history; created idempotently through /api/v1/budgets and through the Budgets page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from billing.audit import Actor
from billing.budgets import spend, text
from billing.budgets.periods import Window, current_window
from billing.budgets.services import BudgetData, create_budget
from billing.models import AlertKind, AlertRule, AuditEvent, Budget
from tests.billing.conftest import allocate, buy, ingest, record
from usage.models import Account, TokenScope, UsageRecord
from usage.services import create_api_token
from usage.teams.services import create_team

FINANCE = Actor.system("tests")
NOW = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)  # a Thursday


def make(account: Account, **fields) -> Budget:
    data = {"name": "B", "amount": Decimal(10), "measure": "usage_value"} | fields
    return create_budget(account, BudgetData(**data), FINANCE)[0]


@pytest.fixture
def october(transactional_db, account: Account) -> Account:
    """Usage of two teams, two keys and two models in September and October 2026."""
    rows = []
    for day in range(1, 15):  # 1–14 October: the search team's gpt-4o, 0.50 USD and 1,100 tokens a day
        at = datetime(2026, 10, day, 9, tzinfo=UTC)
        rows.append(
            record(f"s-{day}", at, "gpt-4o", 1000, 100, "0.50", api_key="name:search-key", metadata={"team": "search"})
        )
    for day in (3, 10):  # the ads team's deepseek, 2.00 USD each
        at = datetime(2026, 10, day, 9, tzinfo=UTC)
        rows.append(
            record(f"a-{day}", at, "deepseek-chat", 5000, 500, "2.00", api_key="name:ads-key", metadata={"team": "ads"})
        )
    for day in (10, 20):  # September
        rows.append(
            record(
                f"n-{day}",
                datetime(2026, 9, day, 9, tzinfo=UTC),
                "gpt-4o",
                100,
                10,
                "3.00",
                metadata={"team": "search"},
            )
        )
    ingest(account, *rows)
    return account


@pytest.mark.parametrize(
    ("fields", "spent"),
    [
        ({}, Decimal("11.00")),  # the whole account: 14 × 0.50 + 2 × 2.00
        ({"scope": "team", "target": "search"}, Decimal("7.00")),
        ({"scope": "api_key", "target": "ads-key"}, Decimal("4.00")),
        ({"scope": "model", "target": "gpt-4*"}, Decimal("7.00")),
        ({"scope": "model", "target": "deepseek-chat"}, Decimal("4.00")),
        ({"scope": "team", "target": "search", "measure": "tokens", "amount": Decimal(100_000)}, Decimal(14 * 1100)),
    ],
)
def test_spent_this_month_by_scope_and_measure(october: Account, fields: dict, spent: Decimal):
    found = spend.status(make(october, **fields), now=NOW)

    assert found.spent == spent
    assert found.window == Window(date(2026, 10, 1), date(2026, 10, 31))


def test_spent_is_read_from_the_rollups_not_the_records(october: Account):
    budget = make(october, scope="team", target="search")
    before = spend.status(budget, now=NOW).spent

    UsageRecord.objects.filter(account=october).delete()  # the rollups are left as they were

    assert spend.status(budget, now=NOW).spent == before == Decimal("7.00")


def test_paid_counts_plan_tokens_at_their_rate_and_wallet_charges(october: Account):
    buy(
        october,
        "search-plan",
        1_000_000,
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
        price="100",
        models=["gpt-4o"],
    )
    allocate(october, NOW)
    budget = make(october, measure="paid", scope="team", target="search")

    # 14 × 1,100 plan tokens at 100 USD per million = 1.54 USD; nothing charged to the wallet.
    assert spend.status(budget, now=NOW).spent == Decimal("1.54")


def test_weeks_start_on_monday_and_days_are_days_of_the_dashboard(october: Account):
    week = make(october, name="W", period="week")
    day = make(october, name="D", period="day", scope="team", target="search")

    assert current_window(week, NOW) == Window(date(2026, 10, 12), date(2026, 10, 18))
    assert spend.status(week, now=NOW).spent == Decimal("1.50")  # 12, 13, 14 October
    assert spend.status(day, now=datetime(2026, 10, 14, 23, tzinfo=UTC)).spent == Decimal("0.50")


def test_a_fixed_range_counts_its_days_and_does_not_reset(october: Account):
    budget = make(october, period="range", starts_on=date(2026, 9, 15), ends_on=date(2026, 10, 5))

    found = spend.status(budget, now=NOW)

    assert found.spent == Decimal("3.00") + 5 * Decimal("0.50") + Decimal("2.00")
    assert found.resets_at is None and found.history == () and found.projected is None


def test_the_forecast_says_by_how_much_and_around_when_it_will_exceed(october: Account):
    budget = make(october, scope="team", target="search", amount=Decimal(13))

    found = spend.status(budget, now=NOW)

    # 7.00 spent; the last 7 days (9–14 Oct and today so far) ran 3.00 in 6.5 days.
    assert found.state == "warning" and found.percent == Decimal("53.8")
    rate = Decimal(3) / Decimal("6.5")
    projected = Decimal(7) + rate * Decimal("16.5")
    assert found.projected == pytest.approx(projected)
    assert (
        text.forecast(found)
        == f"will exceed by {round((projected / 13 - 1) * 100)} % around {text.day_label(found.exceeds_at)}"
    )
    assert found.exceeds_at.date() == (NOW + timedelta(days=float(6 / rate))).date()


def test_history_lists_past_periods_latest_first(october: Account):
    found = spend.status(make(october, scope="team", target="search"), now=NOW)

    assert [(p.window.label(), p.spent) for p in found.history[:2]] == [
        ("September 2026", Decimal("6.00")),
        ("August 2026", Decimal(0)),
    ]
    assert found.history[0].ratio == Decimal("0.6")


def test_a_budget_has_an_alert_rule_with_its_thresholds_as_tiers(october: Account):
    budget = make(october, thresholds=[Decimal(90), Decimal(50)])

    rule = AlertRule.objects.get(budget=budget)
    assert (rule.kind, rule.name, rule.threshold) == (AlertKind.BUDGET, "Budget B", 50)
    assert AuditEvent.objects.filter(action="budget.create", object_id=str(budget.pk)).exists()


# --- The API ------------------------------------------------------------------------------------

BODY = {
    "name": "Search team",
    "scope": "team",
    "target": "search",
    "measure": "usage_value",
    "amount": "10",
    "period": "month",
    "idempotency_key": "search-2026",
}


@pytest.fixture
def billing_api(account: Account) -> Client:
    create_team(account, "search")  # BODY's team
    token = create_api_token(account=account, name="finance", scopes=[TokenScope.BILLING, TokenScope.READ])[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_creating_a_budget_is_idempotent(billing_api: Client):
    first = billing_api.post("/api/v1/budgets", BODY, content_type="application/json")
    again = billing_api.post("/api/v1/budgets", BODY, content_type="application/json")
    other = billing_api.post("/api/v1/budgets", BODY | {"amount": "20"}, content_type="application/json")
    taken = billing_api.post("/api/v1/budgets", BODY | {"idempotency_key": "x"}, content_type="application/json")

    assert (first.status_code, again.status_code, other.status_code, taken.status_code) == (201, 200, 409, 409)
    assert first.json() == again.json()
    body = first.json()
    assert (body["thresholds"], body["enforce"], body["state"], body["spent"], body["ratio"]) == (
        ["50", "80", "100"],
        False,
        "ok",
        "0",
        "0",
    )
    assert Budget.objects.count() == 1


def test_the_list_has_the_contract_fields(billing_api: Client, account: Account):
    billing_api.post("/api/v1/budgets", BODY, content_type="application/json")
    ingest(
        account,
        record("r", datetime.now(UTC) - timedelta(minutes=2), "gpt-4o", 10, 10, "8.50", metadata={"team": "search"}),
    )

    (budget,) = billing_api.get("/api/v1/budgets").json()["budgets"]

    assert set(budget) >= {
        "id", "name", "scope", "target", "measure", "amount", "period", "period_start", "period_end",
        "spent", "ratio", "state", "projected_at_period_end",
    }  # fmt: skip
    assert (budget["spent"], budget["ratio"], budget["state"]) == ("8.5", "0.85", "warning")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scope": "team", "target": ""}, "target"),
        ({"amount": "0"}, "amount"),
        ({"thresholds": []}, "thresholds"),
        ({"period": "range"}, "starts_on"),
        ({"measure": "tokens", "amount": "10.5"}, "amount"),
        ({"period": "year"}, "period"),
    ],
)
def test_a_bad_budget_is_a_400_naming_the_field(billing_api: Client, change: dict, field: str):
    response = billing_api.post("/api/v1/budgets", BODY | change, content_type="application/json")

    assert response.status_code == 400 and field in response.json()["detail"]


def test_reading_needs_the_read_scope_and_writing_the_billing_scope(account: Account):
    reader = Client(HTTP_AUTHORIZATION=f"Bearer {create_api_token(account=account, name='r', scopes=['read'])[1]}")

    assert reader.get("/api/v1/budgets").status_code == 200
    assert reader.post("/api/v1/budgets", BODY, content_type="application/json").status_code == 403


def test_the_budgets_are_in_the_openapi_schema(billing_api: Client):
    schema = billing_api.get("/api/v1/openapi.json").json()

    assert {"get", "post"} <= set(schema["paths"]["/api/v1/budgets"])
    assert "BudgetIn" in schema["components"]["schemas"]


# --- The page -------------------------------------------------------------------------------------


def test_finance_adds_a_budget_and_sees_its_progress(finance_client: Client, account: Account):
    now = datetime.now(UTC)
    ingest(
        account,
        *[
            record(f"p-{d}", now - timedelta(days=d), "gpt-4o", 10, 10, "4.00", metadata={"team": "search"})
            for d in (1, 2, 3)
        ],
    )
    today = now.date()
    response = finance_client.post(
        reverse("billing:budgets"),
        {
            "name": "Search",
            "scope": "team",
            "target": "search",
            "measure": "usage_value",
            "amount": "15",
            "period": "range",
            "starts_on": (today - timedelta(days=10)).isoformat(),
            "ends_on": (today + timedelta(days=10)).isoformat(),
            "thresholds": "50, 80, 100",
        },
    )
    assert response.status_code == 302

    page = finance_client.get(reverse("billing:budgets")).content.decode()

    assert "Search" in page and "12.00 USD of 15.00 USD" in page and "will exceed by" in page
    assert 'class="budget-bar budget-bar--warning"' in page


def test_engineers_may_not_see_budgets(engineer_client: Client, account: Account):
    assert engineer_client.get(reverse("billing:budgets")).status_code == 403


def test_the_admin_adds_a_budget_through_the_same_service(staff_client, account: Account):
    response = staff_client.post(
        "/admin/billing/budget/add/",
        {
            "account": account.pk,
            "name": "Admin made",
            "scope": "model",
            "target": "gpt-4o*",
            "measure": "tokens",
            "amount": "1000000",
            "period": "week",
            "thresholds_text": "75, 100",
            "enforce": "on",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    budget = Budget.objects.get(name="Admin made")
    assert (budget.thresholds, budget.enforce) == ([75, 100], True)
    assert AlertRule.objects.get(budget=budget).kind == AlertKind.BUDGET
    assert AuditEvent.objects.filter(action="budget.create", object_id=str(budget.pk)).exists()


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("0001-01-01", "0001-01-02", "start"),
        ("9999-12-30", "9999-12-31", "end"),
        ("2026-01-01", "9999-12-31", "end"),
        ("1999-12-31", "2026-01-01", "start"),
    ],
)
def test_a_range_at_the_calendars_edges_is_a_400_naming_the_field(billing_api: Client, start, end, field):
    body = BODY | {"period": "range", "start": start, "end": end, "idempotency_key": f"edge-{start}-{end}"}

    response = billing_api.post("/api/v1/budgets", body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert field in response.json()["detail"]
    assert billing_api.get("/api/v1/budgets").status_code == 200
