"""The language a page is read in: the browser's by default, the user's own choice once made."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from toki_dashboard.roles import Role
from usage.models import UserLanguage

ENGLISH_LABEL, CHINESE_LABEL = "Plans &amp; wallet", "套餐与钱包"  # a navigation tab of finance


def test_the_browsers_language_is_the_default_for_a_user_who_has_not_chosen(finance_client: Client, account) -> None:
    chinese = finance_client.get(reverse("usage:overview"), HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.5")
    english = finance_client.get(reverse("usage:overview"), HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.9")

    assert CHINESE_LABEL in chinese.text and ENGLISH_LABEL not in chinese.text
    assert '<html lang="zh-hans">' in chinese.text
    assert ENGLISH_LABEL in english.text and CHINESE_LABEL not in english.text
    assert '<html lang="en">' in english.text


def test_the_language_a_user_chose_sticks_across_requests_and_sessions(make_user, account) -> None:
    user = make_user("fei", Role.FINANCE)
    client = Client()
    client.force_login(user)

    response = client.post(reverse("usage:choose_language"), {"language": "zh-hans", "next": reverse("billing:plans")})

    assert response.status_code == 302 and response["Location"] == reverse("billing:plans")
    assert UserLanguage.objects.get(user=user).language == "zh-hans"
    # The next requests, from an English-speaking browser, stay in the chosen language …
    for _ in range(2):
        page = client.get(reverse("usage:overview"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
        assert CHINESE_LABEL in page.text and ENGLISH_LABEL not in page.text
    # … and so does a new session on another device, without the cookie.
    other_device = Client()
    other_device.force_login(user)
    page = other_device.get(reverse("usage:overview"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert CHINESE_LABEL in page.text

    # Choosing English again switches back.
    client.post(reverse("usage:choose_language"), {"language": "en"})
    page = client.get(reverse("usage:overview"), HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert ENGLISH_LABEL in page.text and CHINESE_LABEL not in page.text


def test_choosing_an_unknown_language_is_refused_and_stores_nothing(finance_client: Client) -> None:
    response = finance_client.post(reverse("usage:choose_language"), {"language": "fr"})

    assert response.status_code == 400
    assert "zh-hans" in response.text
    assert not UserLanguage.objects.exists()


def test_the_language_switch_does_not_send_the_user_to_another_site(finance_client: Client) -> None:
    response = finance_client.post(
        reverse("usage:choose_language"), {"language": "zh-hans", "next": "https://evil.example/"}
    )

    assert response.status_code == 302 and response["Location"] == reverse("usage:overview")


def test_the_header_offers_the_other_language(finance_client: Client, account) -> None:
    english = finance_client.get(reverse("usage:overview"))
    chinese = finance_client.get(reverse("usage:overview"), HTTP_ACCEPT_LANGUAGE="zh-CN")

    assert 'name="language" value="zh-hans"' in english.text and 'value="en"' not in english.text
    assert 'name="language" value="en"' in chinese.text
