"""A call made through the proxy and then read from the New API console by the sync is one
call: the proxy keeps the console's request id (X-Oneapi-Request-Id), the log row carries it."""

from __future__ import annotations

from django.utils import timezone
from openai import OpenAI

from billing.sync import sync_account
from tests.billing.fake_console import ACCESS_TOKEN, USER_ID, FakeConsole, LogRow
from tests.proxy.conftest import KEY, Proxy
from usage import rollups
from usage.models import Provider, UsageRecord

MESSAGES = [{"role": "user", "content": "Hello, world 42"}]


def test_a_proxied_call_the_sync_reads_back_is_counted_once_and_linked_as_seen_by_the_sync(proxy: Proxy, settings):
    settings.BILLING_SYNC_TIMEOUT_SECONDS = 2
    via = OpenAI(base_url=proxy.url, api_key=KEY, max_retries=0)
    streamed = list(
        via.chat.completions.create(
            model="sim-gpt", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = streamed[-1].usage
    (record,) = proxy.records()
    console_id = proxy.sim.log[-1].request_id
    assert (record.upstream_request_id, record.response_id) == (console_id, streamed[0].id)

    with FakeConsole() as console:
        account = proxy.account
        account.provider, account.base_url = Provider.NEWAPI_CONSOLE, console.base_url
        account.set_credentials({"access_token": ACCESS_TOKEN, "user_id": str(USER_ID)})
        account.save()
        console.add_logs(
            LogRow(created_at=int(timezone.now().timestamp()), model_name="sim-gpt", token_name="default",
                   prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, quota=100,
                   request_id=console_id, is_stream=True),
        )  # fmt: skip
        run = sync_account(account)

    assert (run.records_ingested, run.duplicates) == (0, 1), run.error
    (counted,) = UsageRecord.objects.filter(account=account)
    assert counted.pk == record.pk
    assert [(s.source, s.request_id) for s in counted.sightings.all()] == [("sync", console_id)]
    assert sum(group["requests"] for group in rollups.stored(account).values()) == 1
    assert rollups.verify(account) == []
