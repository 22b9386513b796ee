"""Login throttling (django-axes): wrong passwords lock a username out from an address for a while,
the right password included; the page says so. Logins without a request are left alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from toki_dashboard.config import parse_positive_int
from toki_dashboard.login_throttling import client_ip
from toki_dashboard.roles import Role

PASSWORD = "the-right-password"


@pytest.fixture
def fiona(make_user) -> User:
    user = make_user("fiona", Role.FINANCE)
    user.set_password(PASSWORD)
    user.save()
    return user


def sign_in(client: Client, password: str, *, page: str = "login", address: str = "10.0.0.1") -> int:
    response = client.post(
        reverse(page), {"username": "fiona", "password": password}, REMOTE_ADDR=address, follow=False
    )
    return response.status_code


def test_thirty_wrong_passwords_then_the_right_one_does_not_log_in(fiona, settings):
    client = Client()
    statuses = [sign_in(client, f"guess-{n}") for n in range(30)]

    locked = client.post(reverse("login"), {"username": "fiona", "password": PASSWORD}, REMOTE_ADDR="10.0.0.1")

    assert statuses[: settings.AXES_FAILURE_LIMIT - 1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)
    assert set(statuses[settings.AXES_FAILURE_LIMIT :]) == {429}
    assert locked.status_code == 429
    assert "Too many sign-in attempts" in locked.content.decode()
    assert "15 minutes" in locked.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_few_mistakes_then_the_right_password_logs_in_and_starts_the_count_again(fiona, settings):
    client = Client()
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, f"guess-{n}") == 200

    assert sign_in(client, PASSWORD) == 302
    client.logout()
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, f"again-{n}") == 200
    assert sign_in(client, PASSWORD) == 302


def test_the_lockout_is_for_that_address_only(fiona, settings):
    for n in range(settings.AXES_FAILURE_LIMIT):
        sign_in(Client(), f"guess-{n}", address="10.0.0.66")

    assert sign_in(Client(), PASSWORD, address="10.0.0.66") == 429
    assert sign_in(Client(), PASSWORD, address="10.0.0.7") == 302


def test_the_admin_login_is_throttled_too(fiona, settings):
    fiona.is_staff = True
    fiona.save()
    for n in range(settings.AXES_FAILURE_LIMIT):
        sign_in(Client(), f"guess-{n}", page="admin:login")

    assert sign_in(Client(), PASSWORD, page="admin:login") == 429


def test_the_limit_and_the_pause_are_settings(fiona, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(hours=1)
    client = Client()
    sign_in(client, "one")
    sign_in(client, "two")

    response = client.post(reverse("login"), {"username": "fiona", "password": PASSWORD}, REMOTE_ADDR="10.0.0.1")

    assert response.status_code == 429
    assert "1 hour" in response.content.decode()


def test_the_test_clients_login_and_scripts_still_authenticate(fiona):
    assert Client().login(username="fiona", password=PASSWORD)


def test_behind_a_reverse_proxy_the_address_it_saw_is_used(rf, settings):
    request = rf.get("/", REMOTE_ADDR="172.16.0.2", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.1")

    settings.FORWARDED_FOR_PROXIES = 0
    assert client_ip(request) == "172.16.0.2"
    settings.FORWARDED_FOR_PROXIES = 1
    assert client_ip(request) == "198.51.100.1"
    settings.FORWARDED_FOR_PROXIES = 2
    assert client_ip(request) == "203.0.113.9"


@pytest.mark.parametrize("raw", ["0", "-3", "five", "1.5"])
def test_a_limit_that_is_not_a_positive_whole_number_is_refused_naming_it(raw):
    with pytest.raises(ImproperlyConfigured, match="LOGIN_FAILURE_LIMIT"):
        parse_positive_int("LOGIN_FAILURE_LIMIT", raw, default=5)


def test_limits_default_when_unset():
    assert parse_positive_int("LOGIN_FAILURE_LIMIT", None, default=5) == 5
    assert parse_positive_int("LOGIN_FAILURE_LIMIT", " 7 ", default=5) == 7
