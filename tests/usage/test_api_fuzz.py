"""Fuzzing, with 0 × 5xx: the API from its own OpenAPI schema (schemathesis, against a live
server) and every page's query string (hypothesis: periods, dates, filters, cursors, pages).

Each test counts its cases; the totals and the 5xx count are printed at the end of the run.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import schemathesis
from django.test import Client
from django.urls import get_resolver, reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.fuzz_tally import tally
from tests.test_authentication_required import walk
from toki_dashboard.api import api
from toki_dashboard.roles import Role
from usage.models import Membership, TokenScope, UsageRecord
from usage.schemas import validate_records
from usage.services import create_account, create_api_token, record_usage

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
# Valid and deliberately invalid inputs: both must get a documented answer, never a 500.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@pytest.fixture
def every_scope_token(transactional_db) -> str:
    account = create_account(name="Fuzz", slug="fuzz")
    return create_api_token(account=account, name="fuzzer", scopes=list(TokenScope.values))[1]


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_answer_500_or_off_schema(case, live_server, every_scope_token):
    response = case.call(base_url=live_server.url, headers={"Authorization": f"Bearer {every_scope_token}"})
    tally("API from its OpenAPI schema (schemathesis)").add(response.status_code)

    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, response_schema_conformance])


# --- Pages -----------------------------------------------------------------------------------------

MODELS = ["gpt-4o", "gpt-4o-mini", "deepseek-chat"]


@pytest.fixture
def site(make_user, account) -> dict[str, Any]:
    """An admin (every page) looking at an account with some varied usage."""
    records = [
        {
            "request_id": f"r{n}",
            "occurred_at": f"2026-11-{10 + n % 15:02d}T{n % 24:02d}:00:00Z",
            "model": MODELS[n % 3],
            "api_key": f"name:key-{n % 2}",
            "status_code": 429 if n % 5 == 0 else 200,
            "metadata": {"team": ["search", "support"][n % 2]},
            **({} if n % 5 == 0 else {"usage": {"prompt_tokens": 100 + n, "completion_tokens": 10}}),
        }
        for n in range(40)
    ]
    valid, _ = validate_records(records)
    record_usage(account, valid, source="api")
    create_account(name="Other", slug="other")
    admin = make_user("root", Role.ADMIN)
    Membership.objects.create(account=account, user=admin)
    client = Client(raise_request_exception=False)
    client.force_login(admin)
    record = UsageRecord.objects.filter(account=account).first()
    objects = {
        "usage:model_detail": reverse("usage:model_detail", args=["gpt-4o"]),
        "usage:model_card": reverse("usage:model_card", args=["gpt-4o", "latency"]),
        "usage:request_detail": reverse("usage:request_detail", args=[record.pk]),
        "billing:report_csv": reverse("billing:report_csv", args=["2026-11"]),
    }
    pages = sorted(
        objects.get(e.view_name, e.url)
        for e in walk(get_resolver())
        if e.view_name.split(":")[0] in ("usage", "billing")
    )
    return {"client": client, "pages": pages}


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


days = st.one_of(
    st.dates().map(str),  # year 1 to 9999
    st.sampled_from(["2026-11-20", "0001-01-01", "9999-12-31", "2026-02-30", "", "yesterday", "2026-11-20T10:00"]),
    st.text(max_size=12),
)
cursors = st.one_of(
    st.text(max_size=30),
    st.builds(_cursor, st.text(max_size=40)),
    st.builds(
        lambda moment, pk: _cursor(f"{moment}|{pk}"),
        st.sampled_from(
            [
                "2026-11-20T10:00:00+00:00",
                "0001-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59-14:00",
                "2026-11-20T10:00:00",
                "not-a-time",
            ]
        ),
        st.one_of(st.integers(-(2**70), 2**70), st.just("x")),
    ),
)
numbers = st.one_of(st.integers(-(10**20), 10**20).map(str), st.sampled_from(["", "last", "1e9", "-0", "0x10"]))
VALUES: dict[str, st.SearchStrategy[str]] = {
    "period": st.one_of(
        st.sampled_from(["today", "7d", "30d", "this_month", "last_month", "custom"]), st.text(max_size=8)
    ),
    "start": days,
    "end": days,
    "model": st.one_of(st.sampled_from([*MODELS, "unknown-model"]), st.text(max_size=20)),
    "api_key": st.one_of(st.sampled_from(["key-0", "key-1"]), st.text(max_size=20)),
    "team": st.one_of(st.sampled_from(["search", "support", "(no team)"]), st.text(max_size=120)),
    "status": st.one_of(st.sampled_from(["ok", "failed"]), st.text(max_size=8)),
    "error_cause": st.one_of(st.sampled_from(["rate_limited", "timeout", "none"]), st.text(max_size=8)),
    "source": st.one_of(st.sampled_from(["api", "proxy", "import"]), st.text(max_size=8)),
    "estimated": st.sampled_from(["on", "true", "false", "", "2"]),
    "q": st.text(max_size=300),
    "sort": st.one_of(st.sampled_from(["cost", "-cost", "model", "-requests"]), st.text(max_size=12)),
    "after": cursors,
    "before": cursors,
    "page": numbers,
    "audit_page": numbers,
    "month": st.one_of(st.sampled_from(["2026-11", "0000-01", "9999-12", "2026-13"]), st.text(max_size=10)),
    "account": st.sampled_from(["acme", "other", "nope", ""]),
    "next": st.one_of(st.sampled_from(["?period=7d", "https://evil.example/", "//evil"]), st.text(max_size=20)),
}
# Characters a URL query can carry (NUL is refused before any view: tests/test_nul_bytes.py).
queries = st.dictionaries(st.sampled_from(sorted(VALUES)), st.none(), max_size=8).flatmap(
    lambda keys: st.fixed_dictionaries({key: VALUES[key] for key in keys})
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.integers(min_value=0), query=queries, fragment=st.booleans())
def test_no_query_string_makes_a_page_answer_500(site, page, query, fragment):
    url = site["pages"][page % len(site["pages"])]
    query = {name: value.replace("\x00", "") for name, value in query.items()}
    headers = {"HTTP_HX_REQUEST": "true"} if fragment else {}

    response = site["client"].get(url, query, **headers)
    tally("pages' query strings (hypothesis)").add(response.status_code)

    assert response.status_code < 500, f"{url}?{query}"
