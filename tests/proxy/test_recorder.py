"""Writing the record never delays the response and never loses it: while the database
is unavailable records wait in the spool, and a replay writes each of them once."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime

import pytest
from django.db import OperationalError
from openai import OpenAI

from tests.proxy.conftest import KEY, wait_until
from usage import rollups
from usage.models import UsageRecord
from usage.proxy import recorder, spool
from usage.schemas import RecordIn
from usage.tasks import replay_proxy_spool

MESSAGES = [{"role": "user", "content": "A prompt that must never be written to disk"}]


def database_down_once(monkeypatch) -> list[int]:
    """The writer's first database write fails as if the server were gone; later ones work."""
    real = recorder.store_records
    failures: list[int] = []

    def store(records):
        if not failures:
            failures.append(len(records))
            raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")
        return real(records)

    monkeypatch.setattr(recorder, "store_records", store)
    return failures


def spooled_lines() -> list[dict]:
    return [json.loads(line) for path in spool.pending() for line in path.read_text().splitlines()]


def test_a_record_the_database_could_not_take_is_spooled_then_written_by_the_replay_task(proxy, monkeypatch):
    failures = database_down_once(monkeypatch)
    client = OpenAI(base_url=proxy.url, api_key=KEY, max_retries=0)

    answer = client.chat.completions.create(model="sim-gpt", messages=MESSAGES)

    assert answer.choices[0].message.content  # the caller got its answer regardless
    assert proxy.records() == []
    assert failures == [1]
    lines = spooled_lines()
    assert [line["record"]["model"] for line in lines] == ["sim-gpt"]
    assert "never be written" not in json.dumps(lines)  # lengths only, never the text

    assert replay_proxy_spool() == 1

    record = UsageRecord.objects.get()
    assert (record.request_id, record.prompt_tokens) == (lines[0]["record"]["request_id"], answer.usage.prompt_tokens)
    assert spool.pending() == []
    assert rollups.verify(proxy.account) == []


def test_the_writer_replays_the_spool_after_its_next_successful_write(proxy, monkeypatch):
    database_down_once(monkeypatch)
    monkeypatch.setattr(recorder, "REPLAY_INTERVAL_SECONDS", 0.0)
    client = OpenAI(base_url=proxy.url, api_key=KEY, max_retries=0)

    client.chat.completions.create(model="sim-gpt", messages=MESSAGES)
    assert proxy.records() == []
    client.chat.completions.create(model="sim-cjk", messages=MESSAGES)

    assert sorted(r.model for r in proxy.records()) == ["sim-cjk", "sim-gpt"]
    assert spool.pending() == []
    assert rollups.verify(proxy.account) == []


def test_the_response_does_not_wait_for_the_database_write(proxy, monkeypatch):
    real = recorder.store_records
    release = threading.Event()
    writing = threading.Event()

    def slow_store(records):
        writing.set()
        assert release.wait(timeout=30), "the test never released the write"
        return real(records)

    monkeypatch.setattr(recorder, "store_records", slow_store)
    client = OpenAI(base_url=proxy.url, api_key=KEY, max_retries=0)
    try:
        answer = client.chat.completions.create(model="sim-gpt", messages=MESSAGES)
        # The answer is here while the write is still held up.
        assert writing.wait(timeout=10)
        assert UsageRecord.objects.count() == 0
    finally:
        release.set()

    assert answer.usage is not None
    wait_until(lambda: UsageRecord.objects.count() == 1, what="the held-up write")


def _record(request_id: str) -> RecordIn:
    return RecordIn(
        request_id=request_id,
        occurred_at=datetime(2026, 11, 20, 10, tzinfo=UTC),
        model="sim-gpt",
        usage={"prompt_tokens": 10, "completion_tokens": 5},
    )


def test_replaying_the_same_records_again_stores_them_once(account, settings, tmp_path):
    settings.TOKI_PROXY_SPOOL_DIR = tmp_path / "spool"
    records = [(account.pk, _record("proxy-a")), (account.pk, _record("proxy-b"))]
    spool.append(records)
    spool.append(records)  # e.g. a batch spooled twice after an ambiguous failure

    assert spool.replay(recorder.store_records) == 4

    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["proxy-a", "proxy-b"]
    assert rollups.verify(account) == []


def test_a_replay_while_the_database_is_still_down_keeps_every_record(account, settings, tmp_path):
    settings.TOKI_PROXY_SPOOL_DIR = tmp_path / "spool"
    spool.append([(account.pk, _record("proxy-a")), (account.pk, _record("proxy-b"))])

    def down(records):
        raise OperationalError("the database system is starting up")

    assert spool.replay(down) == 0

    assert sorted(line["record"]["request_id"] for line in spooled_lines()) == ["proxy-a", "proxy-b"]
    assert spool.replay(recorder.store_records) == 2
    assert UsageRecord.objects.count() == 2


def test_an_unreadable_spool_line_is_set_aside_and_the_others_written(account, settings, tmp_path):
    settings.TOKI_PROXY_SPOOL_DIR = tmp_path / "spool"
    spool.append([(account.pk, _record("proxy-a"))])
    with open(spool.pending()[0], "ab") as handle:
        handle.write(b'{"account": 1, "record": {"request_id": "torn')  # a crash mid-line

    assert spool.replay(recorder.store_records) == 1

    assert UsageRecord.objects.get().request_id == "proxy-a"
    rejected = list((tmp_path / "spool").glob("rejected-*.jsonl"))
    assert len(rejected) == 1 and b"torn" in rejected[0].read_bytes()


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        ("Bearer sk-proj-abcdefghijklmnop1234", "sk-proj-abcdefghijklmnop1234"),
        ("Bearer not-an-sk-key-but-a-secret-5678", "name:key …5678 #"),
        ("Bearer short", "name:key #"),
        (None, None),
    ],
)
def test_only_keys_ingestion_will_hash_are_passed_whole(authorization, expected):
    value = recorder.key_value(authorization)
    if expected is None or expected.startswith("sk-"):
        assert value == expected
    else:
        assert value.startswith(expected)
        assert authorization.split()[-1] not in value


def test_a_call_that_ends_after_shutdown_began_is_kept_in_the_spool(account, settings, tmp_path):
    settings.TOKI_PROXY_SPOOL_DIR = tmp_path / "spool"
    body = json.dumps({"model": "sim-gpt", "messages": MESSAGES}).encode()

    async def late_call() -> None:
        writer = recorder.Recorder()
        await writer.close()
        call = recorder.Call(
            account_id=account.pk,
            kind="chat",
            endpoint="/v1/chat/completions",
            occurred_at=datetime.now(UTC),
            request_body=body,
            status=200,
        )
        writer.submit(call)

    asyncio.run(late_call())

    assert [line["record"]["model"] for line in spooled_lines()] == ["sim-gpt"]
    assert spool.replay(recorder.store_records) == 1
    assert UsageRecord.objects.get().context_chars == len(MESSAGES[0]["content"])


@pytest.mark.parametrize(
    ("body_id", "header", "kept"),
    [
        ("chatcmpl-1", "20261120100000abcd", ("chatcmpl-1", "20261120100000abcd")),
        ("x" * 300, None, ("x" * 200, None)),
        ("bad \ud800 id", "  ", (None, None)),  # a lone surrogate cannot be stored; blank is no id
        (12345, None, (None, None)),
    ],
)
def test_the_providers_ids_of_a_call_are_kept_when_storable_and_never_cost_it_its_record(body_id, header, kept):
    call = recorder.Call(
        account_id=1,
        kind="chat",
        endpoint="/v1/chat/completions",
        occurred_at=datetime(2026, 11, 20, 10, tzinfo=UTC),
        request_body=b'{"model": "sim-gpt", "messages": [{"role": "user", "content": "hi"}]}',
        status=200,
        upstream_request_id=header,
    )
    call.keep_body(
        json.dumps({"id": body_id, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
    )

    record = recorder.to_record(call)

    assert (record.response_id, record.upstream_request_id) == kept
