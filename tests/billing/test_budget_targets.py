"""A budget for a team or a key names one the account has: a misspelt target would read as
nothing spent, forever, so it is refused (naming the field) instead of stored; a target
written in another case or spacing is stored as the team or key spells itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from billing.alert_checks import check_rule
from billing.alert_facts import Facts
from billing.audit import Actor
from billing.budgets import spend
from billing.budgets.services import BudgetData, create_budget, update_budget
from billing.models import AlertKind, AlertRule, AuditEvent, Budget
from billing.services import BillingError
from tests.billing.conftest import ingest, record
from usage.models import Account, ApiKey, TokenScope
from usage.services import create_api_token, rename_api_key
from usage.teams.services import create_team

FINANCE = Actor.system("tests")


@pytest.fixture
def spending(account: Account) -> Account:
    """The search team's key spent 3.00 USD an hour ago."""
    at = datetime.now(UTC) - timedelta(hours=1)
    ingest(account, record("s-1", at, "gpt-4o", 10, 10, "3.00", api_key="name:search-key", metadata={"team": "Search"}))
    return account


@pytest.fixture
def billing_api(account: Account) -> Client:
    token = create_api_token(account=account, name="finance", scopes=[TokenScope.BILLING, TokenScope.READ])[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def budget(scope: str, target: str, **fields) -> BudgetData:
    return BudgetData(name=fields.pop("name", "B"), amount=Decimal(10), scope=scope, target=target, **fields)


@pytest.mark.parametrize(("scope", "target"), [("team", "Serch"), ("api_key", "search-kee")])
def test_a_budget_for_a_team_or_key_the_account_does_not_have_is_refused(spending: Account, scope, target):
    with pytest.raises(BillingError, match=r"^target: "):
        create_budget(spending, budget(scope, target), FINANCE)

    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    ("scope", "written", "stored"), [("team", "  search ", "Search"), ("api_key", "SEARCH-KEY", "search-key")]
)
def test_a_target_in_another_case_is_stored_as_the_team_or_key_spells_itself(spending, scope, written, stored):
    created, _ = create_budget(spending, budget(scope, written, measure="usage_value"), FINANCE)

    assert created.target == stored
    assert spend.status(created).spent == Decimal("3.00")


def test_a_team_the_account_created_before_any_usage_can_have_a_budget(account: Account):
    create_team(account, "Platform")

    created, _ = create_budget(account, budget("team", "platform"), FINANCE)

    assert created.target == "Platform"


def test_a_model_budget_may_name_models_not_seen_yet(account: Account):
    created, _ = create_budget(account, budget("model", "claude-5*"), FINANCE)

    assert created.target == "claude-5*"


def test_changing_a_budget_to_an_unknown_team_keeps_it_as_it_was(spending: Account):
    created, _ = create_budget(spending, budget("team", "Search"), FINANCE)

    with pytest.raises(BillingError, match=r"^target: "):
        update_budget(created, budget("team", "Serch"), FINANCE)

    created.refresh_from_db()
    assert created.target == "Search"


def test_the_api_answers_400_naming_the_target(billing_api: Client, spending: Account):
    body = {"name": "Search", "scope": "team", "target": "Serch", "amount": "10", "idempotency_key": "k"}

    response = billing_api.post("/api/v1/budgets", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["detail"].startswith("target: ")
    assert not Budget.objects.exists()


def test_the_budgets_page_shows_the_refusal_on_the_target_field(finance_client: Client, spending: Account):
    form = {
        "name": "Search",
        "scope": "team",
        "target": "Serch",
        "measure": "usage_value",
        "amount": "15",
        "period": "month",
        "thresholds": "50, 80, 100",
    }

    response = finance_client.post(reverse("billing:budgets"), form)

    assert response.status_code == 400
    assert "target" in response.context["form"].errors
    assert not Budget.objects.exists()


def test_a_key_budget_follows_its_key_when_the_key_is_renamed(spending: Account, engineer_client: Client):
    """Renaming a key on its edit page kept the budget on the old name: it read as nothing
    spent, and an enforced one stopped blocking the key."""
    created, _ = create_budget(spending, budget("api_key", "search-key", measure="usage_value", enforce=True), FINANCE)
    key = ApiKey.objects.get(account=spending, name="search-key")

    response = engineer_client.post(f"/keys/{key.pk}/edit/", {"name": "search-prod", "team": "Search"})

    assert response.status_code == 302
    created.refresh_from_db()
    assert created.target == "search-prod"
    assert spend.status(created).spent == Decimal("3.00")
    assert AuditEvent.objects.filter(action="budget.update", object_id=str(created.pk)).exists()


def test_a_key_budget_stays_on_a_name_other_keys_still_have(spending: Account):
    twin = ApiKey.objects.create(account=spending, fingerprint="sha256:" + "a" * 64, name="search-key")
    created, _ = create_budget(spending, budget("api_key", "search-key"), FINANCE)

    rename_api_key(twin, name="search-twin", team="")

    created.refresh_from_db()
    assert created.target == "search-key"


def test_the_budget_form_suggests_the_accounts_teams_and_keys(finance_client: Client, spending: Account):
    create_team(spending, "Platform")

    page = finance_client.get(reverse("billing:budgets")).content.decode()

    assert 'list="budget-targets"' in page
    datalist = page[page.index('<datalist id="budget-targets">') :]
    datalist = datalist[: datalist.index("</datalist>")]
    assert datalist.count("<option") == 3
    assert all(f'<option value="{name}">' in datalist for name in ("Platform", "Search", "search-key"))


def test_a_budget_made_before_targets_were_checked_says_it_counts_nothing(finance_client: Client, spending: Account):
    for name, target in (("Typo", "Serch"), ("Fine", "Search")):
        Budget.objects.create(
            account=spending, name=name, scope="team", target=target, measure="usage_value", amount=Decimal(10)
        )

    page = finance_client.get(reverse("billing:budgets")).content.decode()

    typo = page[page.index('data-budget="Typo"') :].split("</tr>")[0]
    fine = page[page.index('data-budget="Fine"') :].split("</tr>")[0]
    assert "No team or key of the account has this name" in typo and "USD" not in typo
    assert ">Unknown</span>" in typo and ">OK</span>" not in typo
    assert "No team or key of the account has this name" not in fine and "3.00 USD of 10.00 USD" in fine


def test_the_api_and_metrics_do_not_read_such_a_budget_as_nothing_spent(billing_api: Client, spending: Account):
    for name, target in (("Typo", "Serch"), ("Fine", "Search")):
        Budget.objects.create(account=spending, name=name, scope="team", target=target, amount=Decimal(10))
    scrape = create_api_token(account=spending, name="prometheus", scopes=[TokenScope.METRICS])[1]

    listed = {b["name"]: b["counted"] for b in billing_api.get("/api/v1/budgets").json()["budgets"]}
    metrics = Client(HTTP_AUTHORIZATION=f"Bearer {scrape}").get("/metrics").content.decode()

    assert listed == {"Typo": False, "Fine": True}
    assert 'budget="Fine"' in metrics and 'budget="Typo"' not in metrics  # no sample: unknown, not 0


def test_the_alert_rule_of_such_a_budget_says_it_cannot_count_and_never_fires(spending: Account):
    typo = Budget.objects.create(
        account=spending, name="Typo", scope="team", target="Serch", measure="tokens", amount=Decimal(1)
    )
    rule = AlertRule.objects.create(
        account=spending, budget=typo, name="Budget Typo", kind=AlertKind.BUDGET, threshold=50
    )

    check = check_rule(rule, Facts(spending, datetime.now(UTC)))

    assert not check.firing
    assert "cannot be counted" in str(check.summary)
