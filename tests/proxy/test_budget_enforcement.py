"""Enforced budgets at the proxy, through the official openai SDK: once exhausted, the budget's
calls get openai.RateLimitError naming it (and nothing reaches upstream); raised, they are served
again. The decision is read from a state the proxy refreshes, never from the database per call."""

from __future__ import annotations

import time
from decimal import Decimal

import openai
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openai import OpenAI

from billing.audit import Actor
from billing.budgets import gate
from billing.budgets.services import BudgetData, create_budget, update_budget
from billing.models import Budget
from tests.proxy.conftest import KEY, Proxy
from usage.models import ErrorCause
from usage.teams.services import create_team

MESSAGES = [{"role": "user", "content": "Hello"}]
FINANCE = Actor.system("tests")


def client(proxy: Proxy, team: str, key: str = KEY) -> OpenAI:
    return OpenAI(base_url=proxy.url, api_key=key, max_retries=0, default_headers={"X-Toki-Team": team})


def served(proxy: Proxy, team: str, key: str = KEY) -> bool:
    try:
        client(proxy, team, key).chat.completions.create(model="sim-gpt", messages=MESSAGES)
    except openai.RateLimitError:
        return False
    return True


def refused_until(proxy: Proxy, team: str, *, refused: bool) -> None:
    """The proxy re-reads the state every TOKI_PROXY_BUDGET_REFRESH_SECONDS: wait for it to notice."""
    deadline = time.monotonic() + 10
    while served(proxy, team) == refused:
        assert time.monotonic() < deadline, f"the proxy did not {'refuse' if refused else 'serve'} in time"
        time.sleep(0.1)


@pytest.fixture
def fast_refresh(settings) -> None:
    settings.TOKI_PROXY_BUDGET_REFRESH_SECONDS = 0.1


def team_budget(proxy: Proxy, tokens: int, *, enforce: bool = True) -> Budget:
    create_team(proxy.account, "search")  # as an admin does on the Teams page
    data = BudgetData(
        name="Search daily tokens",
        amount=Decimal(tokens),
        scope="team",
        target="search",
        measure="tokens",
        period="day",
        enforce=enforce,
    )
    return create_budget(proxy.account, data, FINANCE)[0]


def test_an_exhausted_enforced_budget_refuses_its_team_with_a_rate_limit_error_naming_it(proxy: Proxy, fast_refresh):
    budget = team_budget(proxy, 10)
    assert served(proxy, "search")  # within budget
    proxy.flush()
    gate.publish(proxy.account)  # what the worker does seconds after the batch

    refused_until(proxy, "search", refused=True)
    calls_upstream = len(proxy.sim.log)
    with pytest.raises(openai.RateLimitError) as refused:
        client(proxy, "search").chat.completions.create(model="sim-gpt", messages=MESSAGES)

    error = refused.value.body
    assert refused.value.status_code == 429
    assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
    assert "Budget 'Search daily tokens'" in error["message"] and "resets" in error["message"]
    assert len(proxy.sim.log) == calls_upstream, "a refused call reached upstream"
    assert served(proxy, "ads"), "another team is not refused"
    record = next(r for r in reversed(proxy.records()) if r.status_code == 429)
    assert (record.error_cause, record.error_code, record.metadata["team"]) == (
        ErrorCause.INSUFFICIENT_QUOTA,
        "budget_exceeded",
        "search",
    )
    assert (record.prompt_tokens, record.completion_tokens, record.cost) == (0, 0, Decimal(0))

    update_budget(budget, BudgetData(**{**_data(budget), "amount": Decimal(1_000_000)}), FINANCE)

    refused_until(proxy, "search", refused=False)


def test_a_budget_that_is_not_enforced_only_warns(proxy: Proxy, fast_refresh):
    team_budget(proxy, 10, enforce=False)
    assert served(proxy, "search")
    proxy.flush()
    gate.publish(proxy.account)
    time.sleep(0.3)

    assert served(proxy, "search")


def test_a_key_budget_refuses_that_key_only(proxy: Proxy, fast_refresh):
    other_key = "sk-test-other-0123456789abcdQRST"
    assert served(proxy, "", key=other_key)
    assert served(proxy, "")
    proxy.flush()
    key_name = "sk-…WXYZ"  # how the first call's key is named
    create_budget(
        proxy.account,
        BudgetData(name="One key", amount=Decimal(1), scope="api_key", target=key_name, measure="tokens", enforce=True),
        FINANCE,
    )

    refused_until(proxy, "", refused=True)
    assert served(proxy, "", key=other_key)


def test_the_check_costs_no_query_per_call(proxy: Proxy, fast_refresh, settings):
    settings.TOKI_PROXY_BUDGET_REFRESH_SECONDS = 60
    team_budget(proxy, 1_000_000)
    assert served(proxy, "search")  # the first call reads the state once
    runtime = proxy.server.run(_runtime())

    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert proxy.server.run(runtime.budgets.block(proxy.account.pk, f"Bearer {KEY}", "search", b"{}")) is None

    assert len(queries) == 0


async def _runtime():
    from toki_dashboard.asgi import application

    return application.proxy.runtime()


def _data(budget: Budget) -> dict:
    return {
        "name": budget.name,
        "amount": budget.amount,
        "scope": budget.scope,
        "target": budget.target,
        "measure": budget.measure,
        "period": budget.period,
        "thresholds": budget.threshold_values,
        "enforce": budget.enforce,
    }


@pytest.mark.parametrize(
    ("body", "model"),
    [
        (b'{"model": "gpt-4o", "messages": []}', "gpt-4o"),
        (b'{"messages": [{"content": "say \\"model\\": \\"x\\""}], "model":"sim-gpt"}', "sim-gpt"),  # escaped: text
        (b'{"tools": [{"default": {"model": "inner"}}], "model": "outer"}', "outer"),  # twice: parsed
        (b'{"model": "caf\\u00e9"}', "café"),
        (b'{"input": "no model"}', None),
        (b"not json", None),
    ],
)
def test_the_model_a_call_asks_for_is_read_without_parsing_when_it_can_be(body: bytes, model: str | None):
    from usage.proxy.budgets import _model

    assert _model(body) == model
