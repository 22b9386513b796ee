"""A call the upstream never served costs nothing, however large its prompt."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import openai
import pytest
from openai import OpenAI

from billing.audit import Actor
from billing.models import WalletEntry, WalletEntryKind
from billing.recompute import refresh_allocations
from billing.selectors import wallet_balance
from billing.services import WalletEntryData, record_wallet_entry
from tests.proxy.conftest import KEY, Proxy
from usage import rollups
from usage.models import ModelPrice, PriceSource

TEN_MB = 10 * 1024 * 1024


def test_a_10_mb_prompt_to_an_unreachable_upstream_records_no_tokens_no_cost_and_leaves_the_wallet_alone(
    proxy: Proxy,
):
    ModelPrice.objects.create(
        model_pattern="gpt-4o",
        input_per_mtok=Decimal("2.5"),
        output_per_mtok=Decimal("10"),
        currency="USD",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        source=PriceSource.MANUAL,
    )
    data = WalletEntryData(
        kind="top_up", amount=Decimal("20"), currency="USD", occurred_at=datetime(2020, 1, 1, tzinfo=UTC),
        idempotency_key="opening",
    )  # fmt: skip
    record_wallet_entry(proxy.account, data, Actor.system("tests"))
    proxy.account.base_url = str(httpx.URL(proxy.upstream).copy_with(port=1))  # nothing listens on port 1
    proxy.account.save()
    via = OpenAI(base_url=proxy.url, api_key=KEY, max_retries=0)

    with pytest.raises(openai.InternalServerError) as caught:
        via.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x" * TEN_MB}])
    assert caught.value.status_code == 502

    (record,) = proxy.records()
    assert record.context_bytes >= TEN_MB  # the size stays, for diagnosis
    assert (record.prompt_tokens, record.completion_tokens, record.tokens_source) == (0, 0, "none")
    assert record.cost == 0
    refresh_allocations(proxy.account)
    assert wallet_balance(proxy.account) == Decimal("20")
    assert not WalletEntry.objects.filter(account=proxy.account, kind=WalletEntryKind.USAGE_CHARGE).exists()
    assert rollups.verify(proxy.account) == []
