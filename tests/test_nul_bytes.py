"""A NUL byte anywhere in a URL is a clear refusal, never a 500: PostgreSQL text cannot hold one."""

from __future__ import annotations

import pytest
from django.test import Client

from usage.services import create_api_token

PAGES = [
    "/?period=custom&start=2026-01-01%00&end=2026-01-02",
    "/models/?q=a%00b",
    "/models/gpt%00-4o/",
    "/requests/?model=a%00b&api_key=k%00&team=t%00",
    "/requests/export.csv?model=a%00b",
    "/errors/?model=a%00b",
    "/keys/?team=a%00b",
    "/plans/?account=a%00b",
    "/reports/?month=2026-0%001",
    "/alerts/?account=a%00b",
    "/settings/prices/?model=a%00b&q=a%00b",
]
API = [
    "/api/v1/usage/records?start=2026-01-01&end=2026-01-02&model=a%00b",
    "/api/v1/usage/records?start=2026-01-01&end=2026-01-02&api_key=a%00b&team=t%00&cursor=c%00",
    "/api/v1/usage/summary?start=2026-01-01&end=2026-01-02&group_by=model&account=a%00b",
    "/api/v1/balance?account=a%00b",
]


@pytest.mark.parametrize("url", PAGES)
def test_a_page_given_a_nul_byte_refuses_it_with_400(admin_client: Client, account, url: str):
    response = admin_client.get(url)

    assert response.status_code == 400
    assert b"NUL" in response.content


@pytest.mark.parametrize("url", API)
def test_the_api_refuses_a_nul_byte_with_a_client_error(account, url: str):
    _, secret = create_api_token(account=account, name="reader", scopes=["read"])
    response = Client().get(url, headers={"Authorization": f"Bearer {secret}"})

    assert response.status_code == 400
    assert response.json() == {"detail": "The URL contains a NUL character."}
