from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from tests.billing.webhook_receiver import webhook_receiver  # noqa: F401  (a local webhook receiver, for any test)
from toki_dashboard.roles import Role
from usage.models import Account, Membership
from usage.services import create_account


@pytest.fixture
def account(db) -> Account:
    return create_account(name="Acme", slug="acme", currency="USD")


@pytest.fixture
def make_user(db) -> Callable[..., User]:
    def make(username: str, *roles: Role) -> User:
        user = User.objects.create_user(username=username, password="pw-for-tests")
        # get_or_create: a transactional test's flush deletes the groups the data migration made.
        user.groups.set([Group.objects.get_or_create(name=role.value)[0] for role in roles])
        return user

    return make


def _client_for(user: User, request: pytest.FixtureRequest) -> Client:
    """A client logged in as `user`, who is a member of the test's `account` when it has one."""
    if "account" in request.fixturenames:
        Membership.objects.get_or_create(account=request.getfixturevalue("account"), user=user)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def finance_client(make_user, request) -> Client:
    return _client_for(make_user("fiona", Role.FINANCE), request)


@pytest.fixture
def engineer_client(make_user, request) -> Client:
    return _client_for(make_user("enzo", Role.ENGINEER), request)


@pytest.fixture
def admin_client(make_user, request) -> Client:
    return _client_for(make_user("ada", Role.ADMIN), request)


@pytest.fixture
def roleless_client(make_user, request) -> Client:
    return _client_for(make_user("nobody"), request)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fuzz tests' case counts and 5xx answers, whenever they ran."""
    from tests.fuzz_tally import TALLIES

    for name, counted in sorted(TALLIES.items()):
        terminalreporter.write_line(f"fuzz {name}: {counted.summary()}")
