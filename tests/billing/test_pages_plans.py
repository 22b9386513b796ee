"""The Plans & wallet page, finance's forms and the Overview's balance card, over HTTP.

Figures on the page are compared with expectations computed from the records and
purchases the tests put in, never with numbers copied from the implementation.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.audit import Actor
from billing.forecast import account_forecast
from billing.models import AuditEvent, PlanPurchase, SyncRun, SyncState, SyncTrigger, TokenPlan, WalletEntry
from billing.selectors import wallet_balance
from billing.services import record_manual_balance
from tests.billing.conftest import allocate, buy, ingest, record, top_up
from tests.billing.fake_console import LogRow
from tests.test_celery_worker import worker  # noqa: F401  (a real worker on the configured broker)
from usage.models import Account, Provider
from usage.schemas import validate_records
from usage.services import record_usage

PLANS = reverse("billing:plans")
TESTS = Actor.system("tests")


def now_minus(**delta: float) -> datetime:
    return timezone.now() - timedelta(**delta)


def row_of(html: str, element_id: str) -> str:
    """The markup of one table row, by its id."""
    match = re.search(rf'<tr id="{element_id}">(.*?)</tr>', html, re.S)
    assert match, f"no row {element_id}"
    return match.group(1)


def overlap_of(card: str) -> str:
    match = re.search(r'id="source-overlap">(.*?)</dd>', card, re.S)
    assert match, "no source overlap"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert match, f"no element {element_id}"
    return match.group(1).strip()


def hidden_key(html: str, prefix: str) -> str:
    match = re.search(rf'name="{prefix}-idempotency_key" value="([^"]+)"', html)
    assert match, f"no idempotency key in the {prefix} form"
    return match.group(1)


@pytest.fixture
def usage_with_a_plan(account: Account) -> dict:
    """A plan for GPT models, a top-up, GPT traffic the plan covers and Claude traffic it does not."""
    start = now_minus(days=10)
    purchase_id = buy(account, "gpt-pack", 1_000_000, start, start + timedelta(days=30), models=["gpt-4o*"])
    top_up(account, "first-top-up", "100.00", start)
    gpt = [(1_200 + 10 * i, 300 + i) for i in range(4)]
    claude_costs = [Decimal("0.50"), Decimal("1.25")]
    ingest(
        account,
        *[record(f"gpt-{i}", now_minus(days=3, hours=i), "gpt-4o", p, c, "0.01") for i, (p, c) in enumerate(gpt)],
        *[
            record(f"claude-{i}", now_minus(days=2, hours=i), "claude-3-5-sonnet", 900, 100, str(cost))
            for i, cost in enumerate(claude_costs)
        ],
    )
    allocate(account, timezone.now())
    return {
        "purchase_id": purchase_id,
        "used": sum(p + c for p, c in gpt),
        "granted": 1_000_000,
        "wallet": Decimal("100.00") - sum(claude_costs),
    }


def test_the_plans_page_shows_each_purchases_used_and_remaining_tokens_and_the_wallet(
    finance_client: Client, usage_with_a_plan: dict
):
    expected = usage_with_a_plan

    html = finance_client.get(PLANS).content.decode()

    row = row_of(html, f"purchase-{expected['purchase_id']}")
    assert f"{expected['granted']:,}" in row
    assert f">{expected['used']:,}<" in row
    assert f"{expected['granted'] - expected['used']:,}" in row
    remaining = expected["granted"] - expected["used"]
    assert f'<progress class="share__bar" max="{expected["granted"]}" value="{remaining}"' in row
    assert "gpt-4o*" in row
    assert text_of(html, "token-balance").startswith(f"{expected['granted'] - expected['used']:,}")
    assert text_of(html, "wallet-balance").startswith(f"{expected['wallet']:,.2f}")


def test_the_ledger_lists_entries_newest_first_with_kind_amount_and_who_but_not_their_keys(
    finance_client: Client, usage_with_a_plan: dict
):
    html = finance_client.get(PLANS).content.decode()
    ledger = html[html.index('id="wallet-ledger"') : html.index('id="audit-trail"')]

    assert "first-top-up" not in ledger  # idempotency keys are for scripts (and the admin), not the page
    assert "100.00" in ledger
    assert "Top-up" in ledger and "Usage not covered by plans" in ledger
    # The usage charges were posted after the top-up's time, so they come first.
    assert ledger.index("Usage not covered by plans") < ledger.index("Top-up")


def test_expired_purchases_are_folded_away_under_a_disclosure(finance_client: Client, account: Account):
    buy(account, "old-pack", 5_000, now_minus(days=60), now_minus(days=30), plan="Old pack")
    buy(account, "new-pack", 7_000, now_minus(days=1), now_minus(days=-20), plan="New pack")

    html = finance_client.get(PLANS).content.decode()

    active = html[html.index('id="active-plans"') : html.index('<details class="disclosure">')]
    folded = html[html.index('<details class="disclosure">') :]
    assert "New pack" in active and "Old pack" not in active
    assert "Old pack" in folded.split("</details>")[0]


def test_a_top_up_submitted_twice_with_the_same_key_adds_one_ledger_entry(finance_client: Client, account: Account):
    key = hidden_key(finance_client.get(PLANS).content.decode(), "top_up")
    form = {"top_up-idempotency_key": key, "top_up-amount": "250.00", "top_up-note": "invoice 17"}

    first = finance_client.post(reverse("billing:record_top_up"), form)
    time.sleep(0.01)  # a second click a moment later
    second = finance_client.post(reverse("billing:record_top_up"), form, follow=True)

    assert first.status_code == 302
    assert WalletEntry.objects.filter(account=account).count() == 1
    assert wallet_balance(account) == Decimal("250.00")
    assert "already recorded" in second.content.decode()
    entry = WalletEntry.objects.get(account=account)
    assert (entry.kind, entry.note, entry.created_by.username) == ("top_up", "invoice 17", "fiona")


def test_each_rendering_of_the_top_up_form_carries_a_new_key(finance_client: Client, account: Account):
    first = hidden_key(finance_client.get(PLANS).content.decode(), "top_up")
    second = hidden_key(finance_client.get(PLANS).content.decode(), "top_up")

    assert first != second


def test_a_top_up_shows_in_the_wallet_balance_after_the_redirect(finance_client: Client, account: Account):
    top_up(account, "earlier", "40.00", now_minus(days=1))
    key = hidden_key(finance_client.get(PLANS).content.decode(), "top_up")

    response = finance_client.post(
        reverse("billing:record_top_up"),
        {"top_up-idempotency_key": key, "top_up-amount": "12.34", "top_up-note": ""},
        follow=True,
    )

    assert response.redirect_chain == [(PLANS, 302)]
    assert text_of(response.content.decode(), "wallet-balance").startswith("52.34")


def test_a_void_appears_in_the_audit_trail_with_the_user(finance_client: Client, account: Account):
    purchase_id = buy(account, "entered-twice", 10_000, now_minus(days=2), now_minus(days=-28), plan="Pro")

    response = finance_client.post(
        reverse("billing:void_purchase"), {"purchase": purchase_id, "reason": "entered twice"}, follow=True
    )

    purchase = PlanPurchase.objects.get(pk=purchase_id)
    assert purchase.voided_by.username == "fiona" and purchase.void_reason == "entered twice"
    event = AuditEvent.objects.get(action="purchase.voided", object_id=str(purchase_id))
    assert event.actor.username == "fiona"
    html = response.content.decode()
    trail = html[html.index('id="audit-trail"') :]
    trail = trail[trail.index("<tbody>") :]  # the rows, after the filter form's options
    void_row = next(row for row in trail.split("<tr>") if "purchase.voided" in row)
    assert "fiona" in void_row and "entered twice" in void_row


def test_voiding_without_a_reason_is_refused_and_says_so(finance_client: Client, account: Account):
    purchase_id = buy(account, "keep-me", 10_000, now_minus(days=2), now_minus(days=-28))

    response = finance_client.post(reverse("billing:void_purchase"), {"purchase": purchase_id, "reason": ""})

    assert response.status_code == 400
    assert "reason" in response.content.decode()
    assert PlanPurchase.objects.get(pk=purchase_id).voided_at is None


def test_form_errors_name_the_field_and_record_nothing(finance_client: Client, account: Account):
    key = hidden_key(finance_client.get(PLANS).content.decode(), "top_up")

    response = finance_client.post(
        reverse("billing:record_top_up"), {"top_up-idempotency_key": key, "top_up-amount": "-5", "top_up-note": ""}
    )

    assert response.status_code == 400
    assert list(response.context["top_up_form"].errors) == ["amount"]
    html = response.content.decode()
    assert re.search(r'<input[^>]*aria-invalid="true"[^>]*id="id_top_up-amount"', html)
    assert 'id="id_top_up-amount_error"' in html
    assert re.search(r'<input(?=[^>]*id="id_top_up-amount")[^>]*\sautofocus[\s>]', html)
    assert '<a href="#id_top_up-amount">Amount: ' in html
    assert WalletEntry.objects.count() == 0


def test_a_new_plan_without_tokens_or_expiry_names_both_fields(finance_client: Client, account: Account):
    response = finance_client.post(
        reverse("billing:record_purchase"),
        {
            "purchase-idempotency_key": "k1",
            "purchase-plan_name": "Ad hoc",
            "purchase-price": "10",
            "purchase-currency": "USD",
            "purchase-effective_at": "2026-03-01T00:00",
        },
    )

    assert response.status_code == 400
    assert set(response.context["purchase_form"].errors) == {"tokens", "expires_at"}
    assert PlanPurchase.objects.count() == 0


def test_a_purchase_recorded_through_the_form_reads_times_in_the_dashboard_time_zone(
    finance_client: Client, account: Account, settings
):
    settings.DASHBOARD_TIME_ZONE = "Asia/Tokyo"

    response = finance_client.post(
        reverse("billing:record_purchase"),
        {
            "purchase-idempotency_key": "form-purchase-1",
            "purchase-plan_name": "Ad hoc 2M",
            "purchase-tokens": "2000000",
            "purchase-price": "19.90",
            "purchase-currency": "USD",
            "purchase-effective_at": "2026-03-01T09:00",
            "purchase-expires_at": "2026-04-01T09:00",
            "purchase-allowed_models": "gpt-4o*, deepseek-chat",
            "purchase-priority": "5",
        },
    )

    assert response.status_code == 302
    purchase = PlanPurchase.objects.get(account=account)
    tokyo = ZoneInfo("Asia/Tokyo")
    assert purchase.effective_at == datetime(2026, 3, 1, 9, 0, tzinfo=tokyo)
    assert purchase.effective_at.astimezone(UTC).hour == 0
    assert (purchase.name, purchase.tokens, purchase.price) == ("Ad hoc 2M", 2_000_000, Decimal("19.90"))
    assert (purchase.allowed_models, purchase.priority, purchase.created_by.username) == (
        ["gpt-4o*", "deepseek-chat"],
        5,
        "fiona",
    )


def test_a_catalogue_purchase_takes_the_plans_values_for_blank_fields(finance_client: Client, account: Account):
    plan = TokenPlan.objects.create(
        account=account,
        name="Starter",
        tokens=3_000_000,
        price=Decimal("30"),
        currency="USD",
        validity_days=14,
        allowed_models=["claude-*"],
        priority=2,
    )

    finance_client.post(
        reverse("billing:record_purchase"),
        {
            "purchase-idempotency_key": "from-catalogue",
            "purchase-catalogue_plan": plan.pk,
            "purchase-price": "27.00",
            "purchase-currency": "USD",
            "purchase-effective_at": "2026-03-01T00:00",
        },
    )

    purchase = PlanPurchase.objects.get(account=account)
    assert purchase.plan == plan
    assert purchase.tokens == plan.tokens and purchase.allowed_models == plan.allowed_models
    assert purchase.priority == plan.priority
    assert purchase.expires_at - purchase.effective_at == timedelta(days=plan.validity_days)
    assert purchase.price == Decimal("27.00")


def test_an_adjustment_is_a_new_signed_ledger_entry(finance_client: Client, account: Account):
    top_up(account, "t", "80.00", now_minus(days=1))
    key = hidden_key(finance_client.get(PLANS).content.decode(), "adjustment")

    finance_client.post(
        reverse("billing:record_adjustment"),
        {"adjustment-idempotency_key": key, "adjustment-amount": "-7.50", "adjustment-note": "bank fee"},
    )

    assert wallet_balance(account) == Decimal("72.50")
    assert WalletEntry.objects.filter(account=account, kind="adjustment", amount=Decimal("-7.50")).count() == 1


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("get", "billing:plans"),
        ("get", "billing:reports"),
        ("post", "billing:record_purchase"),
        ("post", "billing:record_top_up"),
        ("post", "billing:record_adjustment"),
        ("post", "billing:void_purchase"),
        ("post", "billing:sync_now"),
    ],
)
def test_engineers_are_refused_the_finance_pages_and_forms(
    engineer_client: Client, account: Account, method: str, name: str
):
    response = getattr(engineer_client, method)(reverse(name))

    assert response.status_code == 403
    assert WalletEntry.objects.count() == 0 and PlanPurchase.objects.count() == 0


def test_admins_open_the_plans_page(admin_client: Client, account: Account):
    assert admin_client.get(PLANS).status_code == 200


# --- The Overview's balance card ------------------------------------------------------------


@pytest.mark.parametrize("client_fixture", ["finance_client", "engineer_client"])
def test_the_balance_card_counts_every_plan_in_effect_whatever_models_it_covers(
    client_fixture: str, account: Account, request: pytest.FixtureRequest
):
    client: Client = request.getfixturevalue(client_fixture)
    start = now_minus(days=5)
    buy(account, "gpt", 500_000, start, start + timedelta(days=30), models=["gpt-4o*"])
    buy(account, "claude", 900_000, start, start + timedelta(days=30), models=["claude-*"])
    buy(account, "later", 700_000, now_minus(days=-2), start + timedelta(days=30))  # not in effect yet
    top_up(account, "t", "25.00", start)
    ingest(account, record("r1", now_minus(days=1), "gpt-4o-mini", 4_000, 1_000, "0.01"))
    allocate(account, timezone.now())

    response = client.get(reverse("billing:balance_card"), HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html  # a fragment for htmx
    assert text_of(html, "balance-card-tokens").startswith(f"{500_000 - 5_000 + 900_000:,}")
    assert text_of(html, "balance-card-wallet").startswith("25.00")


def test_the_balance_card_without_htmx_is_a_whole_page(finance_client: Client, account: Account):
    html = finance_client.get(reverse("billing:balance_card")).content.decode()

    assert "<html" in html and 'id="balance-card"' in html


def _sync_state(account: Account, *, success_minutes_ago: float | None, error_minutes_ago: float | None) -> None:
    account.provider = Provider.NEWAPI_CONSOLE
    account.sync_interval_minutes = 5
    account.save()
    SyncState.objects.create(
        account=account,
        last_success_at=now_minus(minutes=success_minutes_ago) if success_minutes_ago is not None else None,
        last_error_at=now_minus(minutes=error_minutes_ago) if error_minutes_ago is not None else None,
        last_error="HTTP 500 from the console" if error_minutes_ago is not None else "",
    )


@pytest.mark.parametrize(
    ("success", "error", "shown", "detail"),
    [
        (4, None, "Up to date", "Synced 4\xa0minutes ago"),
        (9, None, "Up to date", "Synced 9\xa0minutes ago"),
        (11, None, "Stale", "stale since "),  # past twice the 5-minute interval
        (4, 2, "Failing", "Last sync failed 2\xa0minutes ago"),
    ],
)
def test_the_balance_card_warns_when_the_last_sync_is_old_or_failed(
    finance_client: Client, account: Account, success: float, error: float | None, shown: str, detail: str
):
    _sync_state(account, success_minutes_ago=success, error_minutes_ago=error)

    html = finance_client.get(reverse("billing:balance_card"), HTTP_HX_REQUEST="true").content.decode()

    assert text_of(html, "balance-card-sync") == shown
    assert detail in html
    assert ("metric--warning" in html) == (shown != "Up to date")


# --- Sync now --------------------------------------------------------------------------------


def test_sync_now_enqueues_a_sync_that_a_real_worker_runs(
    worker,  # noqa: F811
    finance_client: Client,
    newapi_account: Account,
    console,
):
    console.add_logs(
        LogRow(
            created_at=int(now_minus(minutes=30).timestamp()),
            model_name="gpt-4o-mini",
            prompt_tokens=1_000,
            completion_tokens=200,
            quota=600,
            request_id="synced-1",
        )
    )

    response = finance_client.post(reverse("billing:sync_now"))

    assert response.status_code == 302
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = SyncRun.objects.filter(account=newapi_account, trigger=SyncTrigger.MANUAL).first()
        if run is not None and run.finished_at is not None:
            break
        time.sleep(0.2)
    assert run is not None and run.ok, run and run.error
    assert run.records_ingested == 1


# --- The forecast on the page ---------------------------------------------------------------


def test_projected_unused_tokens_are_the_forecasts(finance_client: Client, account: Account, usage_with_a_plan: dict):
    purchase_id = usage_with_a_plan["purchase_id"]
    forecast = account_forecast(account)

    html = finance_client.get(PLANS).content.decode()

    expected = forecast.plans[purchase_id].projected_unused_tokens
    assert text_of(html, f"projected-unused-{purchase_id}") == f"{expected:,}"


def test_the_balance_card_shows_when_the_plan_tokens_run_out(finance_client: Client, account: Account, settings):
    # A small plan burned steadily every day for two weeks runs out within the horizon.
    start = now_minus(days=15)
    buy(account, "small", 60_000, start, start + timedelta(days=60), models=["gpt-4o"])
    ingest(
        account, *[record(f"d{day}", now_minus(days=day, hours=1), "gpt-4o", 2_000, 500, "0.01") for day in range(14)]
    )
    allocate(account, timezone.now())
    forecast = account_forecast(account)
    assert forecast.token_run_out.at is not None

    html = finance_client.get(reverse("billing:balance_card"), HTTP_HX_REQUEST="true").content.decode()

    shown = forecast.token_run_out.at.astimezone(ZoneInfo(settings.DASHBOARD_TIME_ZONE))
    assert text_of(html, "balance-card-run-out") == f"{shown.day} {shown:%b}"


def test_the_reconciliation_shows_the_drift_between_provider_and_dashboard(finance_client: Client, account: Account):
    # The provider's balance fell by 4.00 while the dashboard charged the wallet 2.50.
    record_manual_balance(account, balance=Decimal("100.00"), taken_at=now_minus(hours=20), actor=TESTS)
    ingest(account, record("uncovered", now_minus(hours=10), "claude-3-5-sonnet", 1_000, 100, "2.50"))
    allocate(account, timezone.now())
    record_manual_balance(account, balance=Decimal("96.00"), taken_at=now_minus(hours=1), actor=TESTS)

    html = finance_client.get(PLANS).content.decode()

    card = html[html.index('id="reconciliation-title"') :].split("</section>")[0]
    assert text_of(card, "drift").startswith(f"{Decimal('4.00') - Decimal('2.50'):,.2f}")
    assert "Drift over threshold" in card
    assert "Price mismatch" in card
    assert overlap_of(card) == "none"


def test_the_reconciliation_says_how_many_calls_two_sources_both_brought(finance_client: Client, account: Account):
    record_manual_balance(account, balance=Decimal("100.00"), taken_at=now_minus(hours=20), actor=TESTS)
    call = record("proxy-1", now_minus(hours=10), "gpt-4o", 1_000, 100, "2.50", upstream_request_id="rid-1")
    record_usage(account, validate_records([call])[0], source="proxy")
    synced = call | {"request_id": "rid-1"}
    record_usage(account, validate_records([synced])[0], source="sync")
    allocate(account, timezone.now())
    record_manual_balance(account, balance=Decimal("97.50"), taken_at=now_minus(hours=1), actor=TESTS)

    html = finance_client.get(PLANS).content.decode()

    card = html[html.index('id="reconciliation-title"') :].split("</section>")[0]
    assert overlap_of(card) == "1 (proxy and sync) counted once"
    assert "Within threshold" in card


def test_the_ledger_pages_swap_only_the_ledger_with_htmx(finance_client: Client, account: Account):
    for n in range(30):
        top_up(account, f"t{n:02}", f"{n + 1}.00", now_minus(days=30 - n))

    response = finance_client.get(PLANS, {"page": 2}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="wallet-ledger")

    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card card--flush swap-region" id="wallet-ledger"')
    assert "Page 2 of 2" in html
    # Newest first: the second page holds the five oldest entries (amounts 1 to 5).
    assert {f"{n + 1}.00" for n in range(5)} == set(re.findall(r'class="num amount--in">([\d.,]+)<', html))


def test_the_overview_loads_the_balance_card_and_links_to_it_without_javascript(
    finance_client: Client, account: Account
):
    html = finance_client.get(reverse("usage:overview")).content.decode()
    url = reverse("billing:balance_card")

    assert f'hx-get="{url}" hx-trigger="load"' in html
    assert f'<a href="{url}">' in html
