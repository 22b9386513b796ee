"""`api_key`: a key's name stays a name, a value that looks like a secret is kept only as its
hash (and last four), on the ingestion API, the importer and the proxy (usage.key_secrets)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import secrets
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from hypothesis import given
from hypothesis import strategies as st

from tests.proxy.conftest import Proxy, simulator  # noqa: F401  (the upstream, served)
from tests.proxy.conftest import proxy as proxy  # the proxy, served
from usage.key_secrets import looks_like_secret
from usage.models import ApiKey, UsageRecord

NAMES = [
    "batch-jobs",
    "Growth team key",
    "backend",
    "prod-backend",
    "support-bot-2024",
    "ProductionBatchJobs",
    "PaymentsServiceAccount",
    "MyApiKeyForBatchJobs",
    "release2024q3build17",
    "growth_team_key_eu_west_1",
    "analytics_v2_backfill_2025_03",
    "k8s-cluster-prod-eu-1",
    "john.doe@example.com",
    "Key for finance (2024)",
    "Ünïcödé Schlüssel",
    "客户服务密钥",
    "bearer-token-value",
    "x9",
]
SECRETS = [
    "sk-proj-abcdefghijklmnop1234",
    "sk-short",
    "tk-0123456789",
    "pk_live_51HxYz",
    "rk-abcd",
    "toki_3f9a8b7c6d5e4f3a",
    "Bearer some-opaque-value",
    "bearer Night shift key",  # a scheme makes even words a secret
    "Token qwerty-zulu",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "AKIAIOSFODNN7EXAMPLE",
    "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "550e8400-e29b-41d4-a716-446655440000",
    "239d5eec3a1f34b46a45697b9360f420",
    "my-company-key-1234567890abcdef",
    "tenant-secret-0000111122223333",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "14vkxiiQh8o3FSFtEZ7NUPvrHFe0IFdh",
]
WORDS = [
    "batch", "jobs", "growth", "team", "backend", "support", "search", "finance", "analytics", "production",
    "staging", "payments", "service", "account", "marketing", "europe", "west", "mobile", "report", "night",
]  # fmt: skip


def bare(secret: str) -> str:
    """The secret of an Authorization-style value ("Bearer x" → "x")."""
    return secret.split(None, 1)[1] if secret.lower().startswith(("bearer ", "token ")) else secret


def hashed(secret: str) -> str:
    return f"sha256:{hashlib.sha256(bare(secret).encode()).hexdigest()}"


def everything_stored() -> str:
    return json.dumps([*UsageRecord.objects.values(), *ApiKey.objects.values()], default=str)


def body(request_id: str, api_key: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "occurred_at": "2026-11-20T10:15:00Z",
        "model": "gpt-4o-mini",
        "api_key": api_key,
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
    }


# --- The rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_human_readable_name_does_not_look_like_a_secret(name):
    assert not looks_like_secret(name)


@pytest.mark.parametrize("secret", SECRETS)
def test_a_value_with_a_secret_prefix_or_a_token_like_run_looks_like_a_secret(secret):
    assert looks_like_secret(secret)


@given(
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4),
    separator=st.sampled_from(["-", "_", " ", ".", ""]),
    style=st.sampled_from([str.lower, str.capitalize, str.upper]),
    number=st.one_of(st.none(), st.integers(0, 2099)),
)
def test_names_made_of_words_and_a_small_number_never_look_like_secrets(words, separator, style, number):
    name = separator.join(style(word) for word in words) + ("" if number is None else f"{separator or '-'}{number}")
    assert not looks_like_secret(name), name


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "hex, 16 to 64 characters": lambda r: secrets.token_hex(r.randint(8, 32)),
    "letters and digits, 20 to 64": lambda r: "".join(
        r.choice(string.ascii_letters + string.digits) for _ in range(r.randint(20, 64))
    ),
    "base64url, 22 to 64": lambda r: secrets.token_urlsafe(r.randint(16, 48)),
    "base64, 24 to 64": lambda r: "".join(
        r.choice(string.ascii_letters + string.digits + "+/") for _ in range(r.randint(24, 64))
    ),
}
# Misses allowed per generator, measured on 20,000 draws: the rule is a heuristic (README).
ALLOWED_MISSES = {
    "hex, 16 to 64 characters": 0.0,
    "letters and digits, 20 to 64": 0.01,
    "base64url, 22 to 64": 0.015,
    "base64, 24 to 64": 0.015,
}


@pytest.mark.parametrize("kind", GENERATORS)
def test_random_tokens_look_like_secrets_all_but_rarely(kind):
    draw, rng = GENERATORS[kind], random.Random(kind)
    values = [draw(rng) for _ in range(20_000)]
    missed = sum(not looks_like_secret(value) for value in values) / len(values)
    print(f"{kind}: {missed:.3%} read as names")
    assert missed <= ALLOWED_MISSES[kind], f"{kind}: {missed:.2%} read as names"


# --- The ingestion API -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_api_keeps_a_plain_name_as_the_keys_name(post_records, name):
    assert post_records(body("r", name)).status_code == 200

    key = ApiKey.objects.get()
    assert (key.name, key.fingerprint, key.last4) == (name, f"name:{name}", "")


@pytest.mark.parametrize("secret", SECRETS)
def test_the_api_keeps_a_secret_only_as_its_hash(post_records, secret):
    assert post_records(body("r", secret)).status_code == 200

    key = ApiKey.objects.get()
    assert key.fingerprint == hashed(secret)
    assert bare(secret) not in everything_stored()


def test_name_colon_keeps_even_a_secret_looking_value_as_a_name(post_records):
    post_records(body("r", "name:239d5eec3a1f34b46a45697b9360f420"))

    assert ApiKey.objects.get().name == "239d5eec3a1f34b46a45697b9360f420"


def test_bearer_and_the_bare_secret_are_the_same_key(post_records):
    post_records(body("a", "Bearer 239d5eec3a1f34b46a45697b9360f420"), body("b", "239d5eec3a1f34b46a45697b9360f420"))

    assert ApiKey.objects.count() == 1


# --- The importer ------------------------------------------------------------------------------------


def test_the_importer_keeps_names_as_names_and_secrets_only_as_hashes(account, tmp_path: Path):
    path = tmp_path / "usage.jsonl"
    rows = [body(f"n{i}", name) for i, name in enumerate(NAMES)] + [
        body(f"s{i}", secret) for i, secret in enumerate(SECRETS)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    call_command("import_usage", str(path), stdout=io.StringIO(), stderr=io.StringIO())

    assert set(ApiKey.objects.filter(fingerprint__startswith="name:").values_list("name", flat=True)) == set(NAMES)
    assert set(ApiKey.objects.filter(fingerprint__startswith="sha256:").values_list("fingerprint", flat=True)) == {
        hashed(secret) for secret in SECRETS
    }
    stored = everything_stored()
    assert not [secret for secret in SECRETS if bare(secret) in stored]


# --- The proxy ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token", ["239d5eec3a1f34b46a45697b9360f420", "sk-proj-abcdefghijklmnop1234", "batch-jobs", "Growth team key"]
)
def test_the_proxy_never_stores_the_callers_key_whatever_it_looks_like(proxy: Proxy, token):
    answered = httpx.post(
        f"{proxy.url}/chat/completions",
        json={"model": "sim-gpt", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answered.status_code in (200, 401)  # the simulator refuses keys not starting with sk-

    (record,) = proxy.records()
    assert token not in everything_stored()
    key = ApiKey.objects.get()
    assert record.api_key == key
    if looks_like_secret(token):  # the same key as the same secret sent to the ingestion API
        assert key.fingerprint == hashed(token)
