"""Accounts are tenants: a user sees the accounts they are a member of, an admin sees all.

Pages, the API's session access, exports and alert recipients follow the same rule;
a request for an account one is not a member of is a 403.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse

from billing import alerts
from billing.models import AlertDelivery, AlertKind, AlertRule
from toki_dashboard.roles import Role, roles_of
from usage import demo
from usage.models import Account, Membership
from usage.schemas import validate_records
from usage.services import add_member, create_account, record_usage

DAY = "2026-11-20"


def ingest(account: Account, request_id: str, model: str = "gpt-4o") -> None:
    valid, rejected = validate_records(
        [{"request_id": request_id, "occurred_at": f"{DAY}T10:00:00Z", "model": model, "usage": {"prompt_tokens": 1}}]
    )
    assert not rejected
    record_usage(account, valid, source="api")


@pytest.fixture
def other(db) -> Account:
    """An account the role clients are not members of."""
    account = create_account(name="Other Corp", slug="other", currency="EUR")
    ingest(account, "theirs", model="their-secret-model")
    return account


def signed_in(make_user, username: str, *roles: Role, member_of: tuple[Account, ...] = ()) -> Client:
    user = make_user(username, *roles)
    for account in member_of:
        Membership.objects.create(account=account, user=user)
    client = Client()
    client.force_login(user)
    return client


# --- Pages -----------------------------------------------------------------------------------------


def test_a_member_sees_their_account_and_is_refused_another(engineer_client, account, other):
    ingest(account, "ours")

    assert engineer_client.get(reverse("usage:models")).status_code == 200
    refused = engineer_client.get(reverse("usage:models"), {"account": "other"})

    assert refused.status_code == 403
    assert "not a member of the account “other”" in refused.content.decode()
    assert "their-secret-model" not in refused.content.decode()


def test_an_unknown_account_is_refused_like_a_foreign_one_so_names_cannot_be_guessed(engineer_client, account):
    assert engineer_client.get(reverse("usage:models"), {"account": "no-such"}).status_code == 403


def test_an_admin_sees_every_account_without_being_a_member(make_user, account, other):
    admin = signed_in(make_user, "root", Role.ADMIN)

    page = admin.get(reverse("usage:models"), {"account": "other"})

    assert page.status_code == 200
    assert "their-secret-model" in page.content.decode()
    assert admin.get(reverse("usage:models"), {"account": "no-such"}).status_code == 404


def test_the_account_chosen_is_remembered_and_the_switcher_lists_only_ones_own(make_user, account, other):
    third = create_account(name="Third", slug="third")
    client = signed_in(make_user, "enzo", Role.ENGINEER, member_of=(account, third))

    client.get(reverse("usage:models"), {"account": "third"})
    page = client.get(reverse("usage:models")).content.decode()

    assert '<span class="account-chip__name">Third</span>' in page
    assert "?account=acme" in page and "?account=third" in page
    assert "?account=other" not in page


def test_a_user_who_is_a_member_of_no_account_is_told_so(make_user, account):
    client = signed_in(make_user, "newcomer", Role.FINANCE)

    response = client.get(reverse("usage:overview"))

    assert response.status_code == 403
    assert "not a member of any TOKI account" in response.content.decode()


def test_without_any_account_pages_still_say_how_to_create_one(finance_client, db):
    assert "No TOKI account yet" in finance_client.get(reverse("usage:overview")).content.decode()


@pytest.mark.parametrize(
    ("client_fixture", "url"),
    [
        ("engineer_client", reverse("usage:requests_csv")),
        ("finance_client", reverse("billing:report_csv", args=["2026-11"])),
    ],
)
def test_exports_of_another_account_are_refused(client_fixture, url, account, other, request):
    client: Client = request.getfixturevalue(client_fixture)

    assert client.get(url).status_code == 200
    assert client.get(url, {"account": "other"}).status_code == 403


def test_another_accounts_request_is_not_shown_even_by_id(engineer_client, account, other):
    theirs = other.usage_records.get().pk

    assert engineer_client.get(reverse("usage:request_detail", args=[theirs])).status_code == 404
    assert engineer_client.get(reverse("usage:request_detail", args=[theirs]), {"account": "other"}).status_code == 403


# --- The API with a session ---------------------------------------------------------------------------

RECORDS = "/api/v1/usage/records"
SUMMARY = "/api/v1/usage/summary"


def test_single_requests_through_the_api_are_for_engineers_as_on_the_pages(finance_client, engineer_client, account):
    ingest(account, "ours")
    query = {"start": DAY, "end": DAY}

    assert finance_client.get(reverse("usage:requests")).status_code == 403
    assert finance_client.get(RECORDS, query).status_code == 403
    assert [r["request_id"] for r in engineer_client.get(RECORDS, query).json()["records"]] == ["ours"]


def test_the_api_refuses_a_session_another_accounts_data(finance_client, engineer_client, account, other):
    query = {"start": DAY, "end": DAY, "account": "other"}

    refused = engineer_client.get(RECORDS, query)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "You are not a member of the account “other”."
    assert finance_client.get(SUMMARY, query | {"group_by": "model"}).status_code == 403
    assert finance_client.get("/api/v1/balance", {"account": "other"}).status_code == 403


def test_the_api_reads_the_account_the_session_is_looking_at(make_user, account, other):
    client = signed_in(make_user, "enzo", Role.ENGINEER, member_of=(account, other))
    client.get(reverse("usage:models"), {"account": "other"})

    body = client.get(RECORDS, {"start": DAY, "end": DAY}).json()

    assert [r["request_id"] for r in body["records"]] == ["theirs"]


# --- Membership: the command, the admin, the demo data ----------------------------------------------------


def test_add_member_makes_a_user_a_member_with_a_role_once(make_user, account):
    user = make_user("mia")
    out = io.StringIO()

    call_command("add_member", "--account", "acme", "--user", "mia", "--role", "engineer", stdout=out)
    call_command("add_member", "--account", "acme", "--user", "mia", stdout=out)

    assert Membership.objects.filter(account=account, user=user).count() == 1
    assert roles_of(User.objects.get(pk=user.pk)) == {Role.ENGINEER}
    assert "mia is now a member of acme (role engineer)." in out.getvalue()
    assert "mia was already a member of acme." in out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "nope", "--user", "mia"], "No account with slug 'nope'"),
        (["--account", "acme", "--user", "nobody-here"], "No user 'nobody-here'"),
    ],
)
def test_add_member_names_what_does_not_exist(make_user, account, args, message):
    make_user("mia")

    with pytest.raises(CommandError, match=message):
        call_command("add_member", *args)


def test_the_admin_manages_members_on_the_account_page(make_user, account):
    root = make_user("root", Role.ADMIN)
    root.is_staff = root.is_superuser = True
    root.save()
    mia = make_user("mia", Role.FINANCE)
    client = Client()
    client.force_login(root)
    url = reverse("admin:usage_account_change", args=[account.pk])
    form = client.get(url).context["adminform"].form.initial
    prefix = "memberships"

    response = client.post(
        url,
        {
            "name": account.name,
            "slug": account.slug,
            "base_url": account.base_url,
            "currency": account.currency,
            "provider": account.provider,
            "sync_interval_minutes": form["sync_interval_minutes"],
            "created_at_0": f"{account.created_at:%Y-%m-%d}",
            "created_at_1": f"{account.created_at:%H:%M:%S}",
            f"{prefix}-TOTAL_FORMS": "1",
            f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-0-user": str(mia.pk),
        },
    )

    assert response.status_code == 302, response.context["errors"] if response.context else response
    assert Membership.objects.filter(account=account, user=mia).exists()


def test_seed_demo_makes_the_demo_users_members_of_the_demo_account(db):
    account = demo.seed_demo_usage(days=1, until=datetime(2025, 3, 12, 18, tzinfo=UTC)).account

    members = set(Membership.objects.filter(account=account).values_list("user__username", flat=True))
    assert {"finance", "engineer"} <= members
    client = Client()
    assert client.login(username="finance", password=demo.DEMO_PASSWORD)
    assert client.get(reverse("usage:overview")).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_upgrading_keeps_every_finance_and_engineer_user_seeing_every_account(make_user):
    executor = MigrationExecutor(connection)
    executor.migrate([("usage", "0009_latency_index")])
    old = executor.loader.project_state([("usage", "0009_latency_index")]).apps
    old_account = old.get_model("usage", "Account")
    first = old_account.objects.create(name="A", slug="a", base_url="https://x.example/v1")
    second = old_account.objects.create(name="B", slug="b", base_url="https://x.example/v1")
    make_user("fiona", Role.FINANCE)
    make_user("nobody")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    pairs = set(Membership.objects.values_list("user__username", "account__slug"))
    assert pairs == {("fiona", first.slug), ("fiona", second.slug)}


# --- Alert recipients ------------------------------------------------------------------------------


def alert_form(recipients: str) -> dict[str, str]:
    return {
        "name": "Wallet low",
        "kind": AlertKind.WALLET_BELOW,
        "threshold": "25",
        "recipients": recipients,
        "cooldown_hours": "0",
        "enabled": "on",
    }


def test_an_alert_may_only_go_to_people_who_see_its_account(admin_client, make_user, account, other):
    member = make_user("fiona", Role.FINANCE)
    member.email = "fiona@example.com"
    member.save()
    Membership.objects.create(account=account, user=member)
    outsider = make_user("olga", Role.FINANCE)
    outsider.email = "olga@example.com"
    outsider.save()
    Membership.objects.create(account=other, user=outsider)

    refused = admin_client.post(reverse("billing:alerts"), alert_form("fiona@example.com, olga@example.com"))
    accepted = admin_client.post(reverse("billing:alerts"), alert_form("Fiona@Example.com"))

    assert refused.status_code == 400
    assert "olga@example.com is not the email of a member of Acme" in refused.content.decode()
    assert accepted.status_code == 302
    assert AlertRule.objects.get().recipient_list == ["Fiona@Example.com"]


def test_someone_who_left_the_account_gets_its_alerts_no_more(make_user, account):
    for name in ("fiona", "olga"):
        user = make_user(name, Role.FINANCE)
        user.email = f"{name}@example.com"
        user.save()
        add_member(account=account, user=user)
    rule = AlertRule.objects.create(
        account=account,
        name="Wallet low",
        kind=AlertKind.WALLET_BELOW,
        threshold=25,
        recipients="fiona@example.com, olga@example.com",
    )
    Membership.objects.filter(user__username="olga").delete()

    alerts.send_test(rule)

    assert AlertDelivery.objects.get().recipients == ["fiona@example.com"]
    assert [message.to for message in mail.outbox] == [["fiona@example.com"]]
