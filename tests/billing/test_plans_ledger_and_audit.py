"""The Plans page's wallet ledger (by month and day, zero lines hidden) and audit trail
(filters, system events hidden), read server-side: totals, bad filter values, the 403 advice."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing import selectors
from billing.audit import Actor
from billing.models import WalletEntry, WalletEntryKind
from billing.services import WalletEntryData, record_manual_balance, record_wallet_entry
from tests.billing.conftest import top_up
from usage.models import Account
from usage.periods import dashboard_tz

PLANS = reverse("billing:plans")


def test_a_day_total_counts_the_whole_day_even_when_the_page_shows_part_of_it(account: Account):
    day = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=2)
    for n in range(30):  # one day, more entries than a page
        top_up(account, f"same-day-{n}", f"{n + 1}.00", day + timedelta(minutes=n))
    page = list(selectors.wallet_ledger(account)[:25])

    months = selectors.ledger_by_month_and_day(account, page, dashboard_tz())

    [month] = months
    [shown] = month.days
    assert len(shown.entries) == 25
    assert shown.total == sum(Decimal(n + 1) for n in range(30)) == month.total


def test_zero_lines_are_left_out_of_the_ledger_and_counted(account: Account):
    top_up(account, "real", "5.00", timezone.now() - timedelta(hours=2))
    for n in range(3):
        WalletEntry.objects.create(  # what a day's usage posting leaves when the plans covered it
            account=account,
            kind=WalletEntryKind.USAGE_CHARGE,
            amount=Decimal(0),
            currency=account.currency,
            occurred_at=timezone.now() - timedelta(days=n),
            idempotency_key=f"usage-{n}",
        )

    assert [e.idempotency_key for e in selectors.wallet_ledger(account)] == ["real"]
    assert selectors.zero_ledger_lines(account) == 3


def top_up_by_a_person(account: Account, key: str) -> None:
    person, _ = User.objects.get_or_create(username="paula")
    data = WalletEntryData(
        kind=WalletEntryKind.TOP_UP,
        amount=Decimal(5),
        currency=account.currency,
        occurred_at=timezone.now() - timedelta(hours=1),
        idempotency_key=key,
    )
    record_wallet_entry(account, data, Actor.of_user(person))


def rows_of(html: str) -> list[str]:
    trail = html[html.index('id="audit-trail"') :]
    body = trail[trail.index("<tbody>") : trail.index("</tbody>")]
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for row in body.split("<tr>")[1:]]


def test_unknown_audit_filter_values_are_ignored_not_an_error(finance_client: Client, account: Account):
    top_up_by_a_person(account, "t1")

    response = finance_client.get(PLANS, {"audit_actor": "nobody\x7f", "audit_action": "<script>", "audit_page": "x"})

    assert response.status_code == 200
    assert len(rows_of(response.content.decode())) == 1


def test_system_events_are_hidden_until_asked_for_or_their_actor_is_chosen(finance_client: Client, account: Account):
    top_up_by_a_person(account, "t1")
    for n in range(3):
        record_manual_balance(
            account, balance=Decimal(10), taken_at=timezone.now() - timedelta(days=n), actor=Actor.system("seed_demo")
        )

    default = finance_client.get(PLANS).content.decode()
    asked = finance_client.get(PLANS, {"audit_system": "1"}).content.decode()
    chosen = finance_client.get(PLANS, {"audit_actor": "seed_demo"}).content.decode()

    assert [row for row in rows_of(default) if "balance.recorded" in row] == []
    assert "3 system events hidden" in default
    assert len([row for row in rows_of(asked) if "balance.recorded" in row]) == 3
    assert len(rows_of(chosen)) == 3 and all("seed_demo" in row for row in rows_of(chosen))


def test_the_403_names_the_role_and_never_the_old_group_advice(engineer_client: Client, account: Account):
    response = engineer_client.get(PLANS)

    html = response.content.decode()
    assert response.status_code == 403
    assert "finance or engineer" not in html.replace("</strong>", "").replace("<strong>", "")
    assert re.search(r"Plans &amp; wallet needs the <strong>finance</strong> role", html)
