"""The model catalogue sync against the fake console over real HTTP: a relay's `/v1/models`
and a New API console's `/api/pricing`; removed models, price changes with history and
repricing; failures recorded with nothing overwritten."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from billing import model_sync
from billing.providers import ProviderUnavailable
from tests.billing.fake_catalogue import Pricing, model_entry
from tests.billing.fake_console import RELAY_KEY
from toki_dashboard.celery import app
from usage import rollups
from usage.catalogue import selectors
from usage.catalogue.models import CatalogueModel, CatalogueOutcome, CatalogueSync
from usage.models import ModelPrice, PriceSource, UsageRecord
from usage.periods import Period
from usage.pricing.list_prices import BEGINNING
from usage.schemas import validate_records
from usage.services import record_usage


@pytest.fixture
def repricing_runs_after_commit(django_capture_on_commit_callbacks: Callable[..., Any]) -> Iterator[Callable[[], Any]]:
    """`with after_commit(): …` commits as a request would, then runs the repricing it enqueued."""
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    try:
        yield lambda: django_capture_on_commit_callbacks(execute=True)
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved


def call(account, request_id: str, model: str, *, prompt: int = 1_000_000, completion: int = 0, at=None) -> None:
    at = at or timezone.now() - timedelta(hours=1)
    valid, rejected = validate_records(
        [
            {
                "request_id": request_id,
                "occurred_at": at.isoformat(),
                "model": model,
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
            }
        ]
    )
    assert not rejected, rejected
    record_usage(account, valid, source="api")


def catalogue(account) -> dict[str, CatalogueModel]:
    return {m.name: m for m in CatalogueModel.objects.filter(account=account)}


def provider_prices(account, model: str) -> list[tuple]:
    rows = ModelPrice.objects.filter(account=account, source=PriceSource.PROVIDER, model_pattern=model)
    return [
        (p.effective_from, p.effective_to, p.input_per_mtok, p.cached_input_per_mtok, p.output_per_mtok, p.currency)
        for p in rows.order_by("effective_from", "id")
    ]


def cost(request_id: str) -> Decimal | None:
    return UsageRecord.objects.get(request_id=request_id).cost


# --- A relay's /v1/models -------------------------------------------------------------------


def test_a_sync_reads_the_relays_model_list_with_the_relay_key_and_keeps_what_each_entry_says(relay_account, console):
    console.state.models = [
        model_entry("gpt-4o", context_length=128_000),
        model_entry("qwen-max", "alibaba", context_window=32_768),
        model_entry("llama-3-70b", "meta", created=1_717_200_000, max_model_len=8_192),
        model_entry("claude-sonnet", "anthropic", max_input_tokens=200_000, context_length="lots"),
        model_entry("text-embedding-3-small"),
    ]

    run = model_sync.sync_models(relay_account)

    assert (run.outcome, run.error) == (CatalogueOutcome.SUCCESS, "")
    assert (run.source, run.models_listed, run.added, run.removed) == ("/v1/models", 5, 5, 0)
    assert {name: m.context_length for name, m in catalogue(relay_account).items()} == {
        "gpt-4o": 128_000,
        "qwen-max": 32_768,
        "llama-3-70b": 8_192,
        "claude-sonnet": 200_000,
        "text-embedding-3-small": None,
    }
    llama = catalogue(relay_account)["llama-3-70b"]
    assert (llama.owned_by, llama.listed_created_at.timestamp()) == ("meta", 1_717_200_000)
    assert run.started_at <= llama.first_seen_at == llama.last_seen_at <= run.finished_at
    assert llama.removed_at is None
    sent = [h for p, _, h in console.state.requests if p == "/v1/models"]
    assert [h["Authorization"] for h in sent] == [f"Bearer {RELAY_KEY}"]


def test_a_model_missing_from_the_next_listing_is_flagged_removed_and_its_usage_flagged(relay_account, console):
    model_sync.sync_models(relay_account)
    first_seen = catalogue(relay_account)["deepseek-chat"].first_seen_at
    call(relay_account, "r1", "deepseek-chat")
    assert selectors.unlisted_in_use(relay_account, Period.from_query({})) == {}

    console.state.models = [model_entry("gpt-4o")]
    run = model_sync.sync_models(relay_account)

    assert (run.ok, run.models_listed, run.added, run.removed) == (True, 1, 0, 1)
    removed = catalogue(relay_account)["deepseek-chat"]
    assert removed.removed_at is not None and not removed.listed
    assert catalogue(relay_account)["gpt-4o"].removed_at is None
    flagged = selectors.unlisted_in_use(relay_account, Period.from_query({}))
    assert list(flagged) == ["deepseek-chat"] and flagged["deepseek-chat"].pk == removed.pk
    assert selectors.listed_names(relay_account) == ["gpt-4o"]

    console.state.models = [model_entry("gpt-4o"), model_entry("deepseek-chat", "deepseek")]
    back = model_sync.sync_models(relay_account)

    assert (back.returned, back.removed) == (1, 0)
    again = catalogue(relay_account)["deepseek-chat"]
    assert (again.removed_at, again.first_seen_at) == (None, first_seen)
    assert selectors.unlisted_in_use(relay_account, Period.from_query({})) == {}


def test_a_removed_model_used_in_the_period_is_flagged_on_the_models_pages(relay_account, console, engineer_client):
    model_sync.sync_models(relay_account)
    call(relay_account, "r1", "deepseek-chat")
    console.state.models = [model_entry("gpt-4o")]
    model_sync.sync_models(relay_account)

    models_page = engineer_client.get("/models/").content.decode()
    detail = engineer_client.get("/models/deepseek-chat/").content.decode()
    catalogue_page = engineer_client.get("/catalogue/").content.decode()

    assert 'id="unlisted-models"' in models_page and ">removed</a>" in models_page
    assert 'id="model-unlisted"' in detail and "The provider removed deepseek-chat" in detail
    assert 'data-model="deepseek-chat" data-state="removed" class="catalogue-row--flagged"' in catalogue_page


def test_openrouter_style_prices_in_the_model_list_become_provider_prices(relay_account, console):
    pricing = {"prompt": "0.0000025", "completion": "0.00001", "input_cache_read": "0.00000125"}
    console.state.models = [model_entry("gpt-4o", context_length=128_000, pricing=pricing)]

    run = model_sync.sync_models(relay_account)

    assert (run.prices_added, run.prices_changed) == (1, 0)
    assert provider_prices(relay_account, "gpt-4o") == [
        (BEGINNING, None, Decimal("2.5"), Decimal("1.25"), Decimal("10"), "USD")
    ]


# --- A New API console's /api/pricing -------------------------------------------------------


@pytest.fixture
def console_pricing(console):
    console.state.pricing = [
        Pricing("gpt-4o", model_ratio=1.25, completion_ratio=4, cache_ratio=0.5, owner_by="openai", vendor_id=1),
        Pricing("deepseek-chat", model_ratio=0.135, completion_ratio=4, enable_groups=["default", "vip"]),
        Pricing("mj-imagine", quota_type=1, model_price=0.1),
        Pricing("vip-only", model_ratio=5, enable_groups=["vip"]),
        Pricing("internal", model_ratio=1, enable_groups=["staff"]),  # no usable group: hidden by the console
    ]
    return console


def test_a_console_without_a_relay_key_lists_the_priced_models_its_group_may_use(newapi_account, console_pricing):
    run = model_sync.sync_models(newapi_account)

    assert (run.outcome, run.source) == (CatalogueOutcome.SUCCESS, "/api/pricing")
    assert sorted(catalogue(newapi_account)) == ["deepseek-chat", "gpt-4o", "mj-imagine"]
    # 500,000 quota make a dollar; a token at ratio 1 costs 1 quota: $2 per million tokens.
    assert provider_prices(newapi_account, "gpt-4o") == [
        (BEGINNING, None, Decimal("2.5"), Decimal("1.25"), Decimal("10"), "USD")
    ]
    assert provider_prices(newapi_account, "deepseek-chat") == [
        (BEGINNING, None, Decimal("0.27"), None, Decimal("1.08"), "USD")
    ]
    per_request = catalogue(newapi_account)["mj-imagine"]
    assert provider_prices(newapi_account, "mj-imagine") == []
    assert per_request.price_note == "priced per request (0.1 USD × group ratio)"
    assert selectors.unpriced_listed(newapi_account) == ["mj-imagine"]
    assert not [p for p, _, h in console_pricing.state.requests if p == "/api/pricing" and "Authorization" in h]


def test_a_console_with_a_relay_key_lists_v1_models_priced_from_the_pricing_page(newapi_account, console_pricing):
    newapi_account.set_credentials(newapi_account.get_credentials() | {"api_key": RELAY_KEY})
    newapi_account.save()
    console_pricing.state.models = [model_entry("gpt-4o", context_length=128_000), model_entry("o3-mini")]

    run = model_sync.sync_models(newapi_account)

    assert (run.ok, run.source) == (True, "/v1/models + /api/pricing")
    assert {n: m.context_length for n, m in catalogue(newapi_account).items()} == {"gpt-4o": 128_000, "o3-mini": None}
    assert provider_prices(newapi_account, "gpt-4o")[0][2:5] == (Decimal("2.5"), Decimal("1.25"), Decimal("10"))
    assert provider_prices(newapi_account, "o3-mini") == []


def test_console_prices_follow_the_users_group_and_the_accounts_currency(newapi_account, console_pricing):
    console_pricing.state.user_group = "vip"  # ratio 0.8
    newapi_account.currency = "CNY"  # the console converts at its usd_exchange_rate, 7.3
    newapi_account.save()

    model_sync.sync_models(newapi_account)

    assert sorted(catalogue(newapi_account)) == ["deepseek-chat", "vip-only"]  # what the vip group may use
    # 0.135 × 0.8 (group) × $2 per million × 7.3 CNY per dollar; output × 4.
    assert provider_prices(newapi_account, "deepseek-chat") == [
        (BEGINNING, None, Decimal("1.5768"), None, Decimal("6.3072"), "CNY")
    ]


def test_a_group_the_pricing_page_gives_no_ratio_is_listed_without_prices_and_says_why(newapi_account, console_pricing):
    console_pricing.state.group_ratio = {"vip": 0.8}

    run = model_sync.sync_models(newapi_account)

    assert run.ok and sorted(catalogue(newapi_account)) == ["deepseek-chat", "gpt-4o", "mj-imagine"]
    assert not ModelPrice.objects.filter(source=PriceSource.PROVIDER).exists()
    assert run.error == "/api/pricing gives no ratio for group “default”: its prices were not taken"


def test_a_price_change_closes_the_old_row_opens_a_new_one_and_reprices_what_it_covers(
    newapi_account, console_pricing, repricing_runs_after_commit
):
    call(newapi_account, "before", "gpt-4o", prompt=1_000_000)  # unpriced until the first sync
    with repricing_runs_after_commit():
        first = model_sync.sync_models(newapi_account)
    assert cost("before") == Decimal("2.5")
    # A call just after the coming change, already stored (and priced at the old rate).
    call(newapi_account, "after", "gpt-4o", prompt=1_000_000, at=timezone.now() + timedelta(minutes=2))
    assert cost("after") == Decimal("2.5")

    console_pricing.state.pricing[0].model_ratio = 1.5
    with repricing_runs_after_commit():
        second = model_sync.sync_models(newapi_account)

    assert (first.prices_added, second.prices_added, second.prices_changed) == (2, 0, 1)
    changed_at = ModelPrice.objects.get(model_pattern="gpt-4o", effective_to__isnull=True).effective_from
    assert first.started_at < changed_at <= second.finished_at
    assert provider_prices(newapi_account, "gpt-4o") == [
        (BEGINNING, changed_at, Decimal("2.5"), Decimal("1.25"), Decimal("10"), "USD"),
        (changed_at, None, Decimal("3"), Decimal("1.5"), Decimal("12"), "USD"),
    ]
    assert (cost("before"), cost("after")) == (Decimal("2.5"), Decimal("3"))
    assert rollups.verify(newapi_account) == []

    unchanged = model_sync.sync_models(newapi_account)

    assert (unchanged.prices_added, unchanged.prices_changed) == (0, 0)
    assert len(provider_prices(newapi_account, "gpt-4o")) == 2


def test_a_manual_price_for_the_account_still_wins_over_the_providers(newapi_account, console_pricing):
    manual = ModelPrice.objects.create(
        account=newapi_account,
        model_pattern="gpt-4o",
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("1"),
        effective_from=BEGINNING,
        source=PriceSource.MANUAL,
    )

    model_sync.sync_models(newapi_account)

    row = next(r for r in selectors.catalogue_rows(newapi_account, Period.from_query({})) if r.name == "gpt-4o")
    assert row.price.pk == manual.pk
    assert ModelPrice.objects.filter(model_pattern="gpt-4o", source=PriceSource.PROVIDER).count() == 1


# --- Failures ---------------------------------------------------------------------------------


@pytest.fixture
def synced_relay(relay_account, console) -> CatalogueSync:
    console.state.models = [
        model_entry("gpt-4o", pricing={"prompt": "0.0000025", "completion": "0.00001"}),
        model_entry("deepseek-chat", "deepseek"),
    ]
    run = model_sync.sync_models(relay_account)
    assert run.ok
    console.state.models = [model_entry("o3-mini")]  # what a failed sync must not store
    return run


def snapshot(account) -> tuple:
    entries = sorted((m.name, m.removed_at, m.last_seen_at) for m in CatalogueModel.objects.filter(account=account))
    return entries, list(ModelPrice.objects.order_by("pk").values_list("pk", "effective_to", "input_per_mtok"))


@pytest.mark.parametrize(
    ("mode", "outcome", "message"),
    [
        ("401", CatalogueOutcome.CREDENTIALS_REJECTED, "HTTP 401"),
        ("openai_invalid_key", CatalogueOutcome.CREDENTIALS_REJECTED, "refused the key"),
        ("truncated", CatalogueOutcome.BAD_ANSWER, "invalid JSON"),
        ("html", CatalogueOutcome.BAD_ANSWER, "invalid JSON"),
        ("openai_error", CatalogueOutcome.BAD_ANSWER, "billing is not enabled"),
        ("success_false", CatalogueOutcome.BAD_ANSWER, "/v1/models failed: 系统繁忙"),
    ],
)
def test_a_failed_listing_is_recorded_and_overwrites_nothing(
    relay_account, console, synced_relay, mode, outcome, message
):
    before = snapshot(relay_account)
    console.fail("/v1/models", mode)

    run = model_sync.sync_models(relay_account)

    assert (run.outcome, run.ok) == (outcome, False)
    assert message in run.error and run.finished_at is not None
    assert snapshot(relay_account) == before
    status = selectors.catalogue_status(relay_account)
    assert (status.last_failed, status.last_success.pk) == (True, synced_relay.pk)


@pytest.mark.parametrize("mode", ["500", "502", "429"])
def test_an_unavailable_provider_is_recorded_raised_for_a_retry_and_overwrites_nothing(
    relay_account, console, synced_relay, mode
):
    before = snapshot(relay_account)
    console.fail("/v1/models", mode)

    with pytest.raises(ProviderUnavailable, match=f"HTTP {mode}"):
        model_sync.sync_models(relay_account)

    run = CatalogueSync.objects.order_by("-pk").first()
    assert run.outcome == CatalogueOutcome.UNAVAILABLE and f"HTTP {mode}" in run.error
    assert snapshot(relay_account) == before


def test_an_empty_or_malformed_list_is_a_bad_answer_not_every_model_removed(relay_account, console, synced_relay):
    before = snapshot(relay_account)
    console.state.models = []
    empty = model_sync.sync_models(relay_account)
    console.state.models = [model_entry("gpt-4o"), {"object": "model", "owned_by": "x"}]
    no_id = model_sync.sync_models(relay_account)

    assert (empty.outcome, no_id.outcome) == (CatalogueOutcome.BAD_ANSWER, CatalogueOutcome.BAD_ANSWER)
    assert "listed no models" in empty.error and "entry 1 has no usable model id" in no_id.error
    assert snapshot(relay_account) == before


def test_a_console_pricing_failure_is_recorded_and_overwrites_nothing(newapi_account, console_pricing):
    assert model_sync.sync_models(newapi_account).ok
    before = snapshot(newapi_account)
    console_pricing.fail("/api/pricing", "success_false")

    run = model_sync.sync_models(newapi_account)

    assert run.outcome == CatalogueOutcome.BAD_ANSWER and "/api/pricing failed" in run.error
    assert snapshot(newapi_account) == before


def test_the_key_never_reaches_what_is_stored(relay_account, console, caplog):
    console.fail("/v1/models", "echo_token")

    run = model_sync.sync_models(relay_account)

    assert run.outcome == CatalogueOutcome.CREDENTIALS_REJECTED
    assert RELAY_KEY not in run.error and "[redacted]" in run.error
    assert RELAY_KEY not in caplog.text


def test_a_manual_account_without_a_relay_key_says_what_to_configure(account):
    run = model_sync.sync_models(account)

    assert run.outcome == CatalogueOutcome.NOT_CONFIGURED
    assert "needs a relay key" in run.error


def test_one_sync_at_a_time_per_account(relay_account, console):
    running = CatalogueSync.objects.create(account=relay_account)

    assert model_sync.sync_models(relay_account) is None

    CatalogueSync.objects.filter(pk=running.pk).update(started_at=timezone.now() - timedelta(hours=1))
    assert model_sync.sync_models(relay_account).ok
    assert CatalogueSync.objects.get(pk=running.pk).outcome == CatalogueOutcome.ERROR
