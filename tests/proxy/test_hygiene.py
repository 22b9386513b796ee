"""What the proxy passes on and what it refuses: cookies and hop-by-hop headers stay on
their side, paths stay under the account's base path, bodies over PROXY_MAX_BODY_BYTES
are refused while they stream in, and with PROXY_REQUIRE_TOKEN a caller also needs a
dashboard token. Every refusal is an OpenAI-style error the SDK understands."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI

from tests.proxy.conftest import KEY, Proxy
from usage.models import TokenScope, UsageRecord
from usage.proxy import hygiene
from usage.services import create_account, create_api_token, revoke_api_token

MESSAGES = [{"role": "user", "content": "Hello"}]


def raw_request(proxy: Proxy, method: str, target: str, body: bytes = b"") -> tuple[int, dict]:
    """A request whose target is sent byte for byte (httpx and the SDK would normalise it)."""
    connection = http.client.HTTPConnection("127.0.0.1", proxy.server.port, timeout=10)
    try:
        connection.request(method, target, body=body, headers={"Authorization": f"Bearer {KEY}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def assert_openai_error(body: dict, code: str) -> None:
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["type"] and body["error"]["message"]


# --- Headers ---------------------------------------------------------------------------------


def test_the_dashboards_cookies_and_hop_by_hop_headers_never_reach_the_upstream(proxy):
    httpx.post(
        f"{proxy.url}/echo/headers",
        content=b"{}",
        headers={
            "Authorization": f"Bearer {KEY}",
            "Content-Type": "application/json",
            "Cookie": "sessionid=dashboard-session; csrftoken=dashboard-csrf",
            "Proxy-Authorization": "Basic cHJveHk6cHJveHk=",
            "TE": "trailers",
            "X-Stainless-Lang": "python",
            "X-Toki-Team": "search",
            "X-Internal-Debug": "1",
        },
    )

    seen = proxy.sim.log[-1].headers
    assert "cookie" not in seen and "proxy-authorization" not in seen and "te" not in seen
    assert "x-toki-team" not in seen and "x-internal-debug" not in seen
    assert seen["authorization"] == f"Bearer {KEY}"
    assert seen["x-stainless-lang"] == "python"
    assert seen["content-type"] == "application/json"


def test_an_upstream_set_cookie_never_reaches_the_dashboards_origin(proxy):
    direct = httpx.get(f"{proxy.upstream}/echo/anything", headers={"Authorization": f"Bearer {KEY}"})
    via = httpx.get(f"{proxy.url}/echo/anything", headers={"Authorization": f"Bearer {KEY}"})

    assert "set-cookie" in direct.headers  # the upstream does set one
    assert "set-cookie" not in via.headers and not via.cookies
    assert "keep-alive" not in via.headers
    for relayed in ("content-type", "x-request-id", "openai-processing-ms", "x-ratelimit-remaining-requests"):
        assert via.headers[relayed] == direct.headers[relayed]


def test_extra_request_headers_are_forwarded_only_when_configured(proxy, settings):
    settings.TOKI_PROXY_FORWARD_HEADERS = ("X-Sim-Delay", "Cookie")
    httpx.get(
        f"{proxy.url}/echo/x",
        headers={"Authorization": f"Bearer {KEY}", "X-Sim-Delay": "0", "Cookie": "sessionid=s"},
    )

    seen = proxy.sim.log[-1].headers
    assert seen["x-sim-delay"] == "0"
    assert "cookie" not in seen  # never, even when listed


# --- Paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/proxy/acme/v1/../../internal/secret",
        "/proxy/acme/v1/%2e%2e/%2E%2E/internal/secret",
        "/proxy/v1/models/../../../internal/secret",
        "/proxy/acme/v1/echo/../../internal",
    ],
)
def test_a_path_cannot_climb_out_of_the_base_path(proxy, target):
    status, body = raw_request(proxy, "GET", target)

    assert status == 400
    assert_openai_error(body, "invalid_path")
    assert not [e for e in proxy.sim.log if "internal" in e.path]


def test_dot_segments_inside_the_base_path_are_resolved_before_forwarding(proxy):
    status, body = raw_request(proxy, "GET", "/proxy/acme/v1/models/../echo/./files/x")
    assert (status, body["path"]) == (200, "/v1/echo/files/x")

    # Encoded once more, a dot segment is a name like any other and stays one.
    status, body = raw_request(proxy, "GET", "/proxy/acme/v1/echo/%252e%252e/x")
    assert (status, body["path"]) == (200, "/v1/echo/%2e%2e/x")


@pytest.mark.parametrize("target", ["/proxy/acme/v1/chat%00/completions", "/proxy/v1/echo/%00"])
def test_a_nul_byte_in_the_path_is_an_openai_style_400(proxy, target):
    status, body = raw_request(proxy, "POST", target, b'{"model": "sim-gpt"}')

    assert status == 400
    assert_openai_error(body, "invalid_path")
    assert proxy.sim.log == []
    assert proxy.records() == []


# --- Bodies ----------------------------------------------------------------------------------


def _chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_a_body_over_the_limit_is_refused_with_413_and_nothing_is_recorded(proxy, settings):
    settings.PROXY_MAX_BODY_BYTES = 10_000
    _, via = OpenAI(base_url=proxy.upstream, api_key=KEY), OpenAI(base_url=proxy.url, api_key=KEY, max_retries=0)

    with pytest.raises(openai.APIStatusError) as caught:
        via.chat.completions.create(model="sim-gpt", messages=[{"role": "user", "content": "x" * 20_000}])
    declared = httpx.post(
        f"{proxy.url}/chat/completions",
        content=b"{" + b" " * 20_000 + b"}",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    chunked = httpx.post(
        f"{proxy.url}/chat/completions", content=_chunks(20_000), headers={"Authorization": f"Bearer {KEY}"}
    )

    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"
    for answer in (declared, chunked):
        assert answer.status_code == 413
        assert_openai_error(answer.json(), "request_too_large")
        assert answer.json()["error"]["type"] == "invalid_request_error"
    assert proxy.sim.log == []
    assert UsageRecord.objects.count() == 0 and proxy.records() == []


def test_a_body_within_the_limit_goes_through(proxy, settings):
    settings.PROXY_MAX_BODY_BYTES = 10_000
    _, via = OpenAI(base_url=proxy.upstream, api_key=KEY), OpenAI(base_url=proxy.url, api_key=KEY, max_retries=0)

    via.chat.completions.create(model="sim-gpt", messages=[{"role": "user", "content": "x" * 9_000}])

    assert len(proxy.records()) == 1


# --- The optional dashboard token ------------------------------------------------------------


def test_without_the_setting_no_dashboard_token_is_asked_for(proxy):
    OpenAI(base_url=proxy.url, api_key=KEY, max_retries=0).chat.completions.create(model="sim-gpt", messages=MESSAGES)

    assert len(proxy.records()) == 1


def test_with_the_setting_a_caller_needs_a_proxy_token_of_the_account(proxy, settings):
    settings.PROXY_REQUIRE_TOKEN = True
    settings.TOKI_PROXY_ACCOUNT_CACHE_SECONDS = 0  # a revocation shows at once
    token = create_api_token(account=proxy.account, name="caller", scopes=[TokenScope.PROXY])
    reader = create_api_token(account=proxy.account, name="reader", scopes=[TokenScope.READ])[1]
    other = create_api_token(
        account=create_account(name="Other", slug="other"), name="caller", scopes=[TokenScope.PROXY]
    )[1]

    def call(dashboard_token: str | None) -> None:
        headers = {"X-Toki-Token": dashboard_token} if dashboard_token else {}
        client = OpenAI(base_url=proxy.url_for("acme"), api_key=KEY, max_retries=0, default_headers=headers)
        client.chat.completions.create(model="sim-gpt", messages=MESSAGES)

    refusals = {}
    for name, value in {"none": None, "unknown": "toki_unknown", "reader": reader, "other": other}.items():
        with pytest.raises(openai.APIStatusError) as caught:
            call(value)
        refusals[name] = (caught.value.status_code, caught.value.body["code"])
    call(token[1])
    revoke_api_token(token[0])
    with pytest.raises(openai.AuthenticationError):
        call(token[1])

    assert refusals == {
        "none": (401, "missing_proxy_token"),
        "unknown": (401, "invalid_proxy_token"),
        "reader": (403, "proxy_scope_missing"),
        "other": (403, "proxy_token_wrong_account"),
    }
    assert len(proxy.sim.log) == 1  # only the call with a good token went upstream
    assert "x-toki-token" not in proxy.sim.log[0].headers
    assert len(proxy.records()) == 1


@pytest.mark.parametrize(
    ("raw", "forwarded"),
    [
        (b"/proxy/acme/v1/chat/completions", "/chat/completions"),
        (b"/proxy/acme/v1", ""),
        (b"/proxy/acme/v1/", "/"),
        (b"/proxy/acme/v1/files/./a", "/files/a"),
        (b"/proxy/acme/v1/files/a/..", "/files/"),
        (b"/proxy/acme/v1/models/org%2Fname", "/models/org%2Fname"),  # an encoded slash stays one
        (b"/proxy/acme/v1/files/a b", "/files/a%20b"),
        (b"/proxy/acme/v1/.well-known", "/.well-known"),
    ],
)
def test_paths_are_forwarded_decoded_once_and_encoded_again(raw, forwarded):
    assert hygiene.forward_path(raw, 3).raw == forwarded
