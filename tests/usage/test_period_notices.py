"""Every page with a period reads it the same way (usage.periods.Period.read): a period it
cannot understand shows the default one with a notice saying so, never silently."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from usage.models import Account

PAGES = [
    ("finance_client", "usage:overview"),
    ("finance_client", "usage:spend"),
    ("engineer_client", "usage:keys"),
    ("engineer_client", "usage:models"),
    ("engineer_client", "usage:errors"),
    ("engineer_client", "usage:requests"),
    ("engineer_client", "usage:catalogue"),
]


@pytest.mark.parametrize(("role", "name"), PAGES)
def test_an_unknown_period_shows_the_default_with_a_notice(request, account: Account, role: str, name: str):
    client: Client = request.getfixturevalue(role)

    page = client.get(reverse(name), {"period": "fortnight"}).content.decode()

    assert "Unknown period “fortnight”: showing last 30 days." in page


@pytest.mark.parametrize(("role", "name"), PAGES)
def test_dates_that_cannot_be_read_show_the_default_with_a_notice(request, account: Account, role: str, name: str):
    client: Client = request.getfixturevalue(role)

    page = client.get(reverse(name), {"period": "custom", "start": "2026-13-01", "end": "yesterday"}).content.decode()

    assert "The dates were not understood (use YYYY-MM-DD, from 2000-01-01 to 9998-12-31)" in page


@pytest.mark.parametrize(("role", "name"), PAGES)
def test_a_period_that_is_understood_has_no_notice(request, account: Account, role: str, name: str):
    client: Client = request.getfixturevalue(role)

    page = client.get(reverse(name), {"period": "7d"}).content.decode()

    assert "Unknown period" not in page and "not understood" not in page
