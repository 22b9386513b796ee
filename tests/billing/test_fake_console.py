"""The fake console answers the §4.6 shapes the sync client relies on."""

from __future__ import annotations

import json

import httpx

from tests.billing.fake_console import ACCESS_TOKEN, USER_ID, LogRow


def get(console, path: str, **params) -> dict:
    headers = {"Authorization": f"Bearer {ACCESS_TOKEN}", "New-Api-User": str(USER_ID)}
    root = console.base_url.removesuffix("/v1")
    return httpx.get(root + path, params=params, headers=headers, timeout=5).json()


def test_log_rows_have_a_string_other_an_unstable_id_and_sometimes_no_request_id(console):
    console.add_logs(
        LogRow(created_at=1000, model_name="gpt-4o", prompt_tokens=1, completion_tokens=2, quota=3,
               request_id="abc", other={"cache_tokens": 0}),
        LogRow(created_at=1001, model_name="gpt-4o", prompt_tokens=1, completion_tokens=2, quota=3),
    )  # fmt: skip

    first = get(console, "/api/log/self", type=2, p=1, page_size=10)
    second = get(console, "/api/log/self", type=2, p=1, page_size=10)

    assert first["success"] is True and set(first["data"]) == {"page", "page_size", "total", "items"}
    items = first["data"]["items"]
    assert [i["created_at"] for i in items] == [1001, 1000]  # newest first
    assert isinstance(items[1]["other"], str) and json.loads(items[1]["other"]) == {"cache_tokens": 0}
    assert "request_id" not in items[0] and items[1]["request_id"] == "abc"
    assert {i["id"] for i in items}.isdisjoint({i["id"] for i in second["data"]["items"]})


def test_failures_are_http_200_with_success_false(console):
    console.fail("/api/user/self", "success_false")

    body = get(console, "/api/user/self")

    assert body == {"success": False, "message": "系统繁忙，请稍后再试"}
