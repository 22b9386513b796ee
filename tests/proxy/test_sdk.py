"""The official openai SDK as the caller, through the proxy to the simulator.

Each test makes the same call directly and through the proxy: the SDK must see the same
thing both ways (same objects, same chunks, same errors), and each proxied call must
leave exactly one correct UsageRecord (source=proxy).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.proxy.conftest import KEY, Proxy, wait_until
from usage import parameters
from usage.models import AcceptedParameter, ApiKey, ErrorCause, UsageRecord

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, world 42"}]
# "Be brief." + "Hello, world 42", counted by hand.
CONTEXT = {"cjk": 0, "letters": 17, "digits": 2, "spaces": 3, "punct": 2, "other": 0}


def clients(proxy: Proxy, key: str = KEY) -> tuple[OpenAI, OpenAI]:
    return (
        OpenAI(base_url=proxy.upstream, api_key=key, max_retries=0),
        OpenAI(base_url=proxy.url, api_key=key, max_retries=0),
    )


def async_clients(proxy: Proxy, key: str = KEY) -> tuple[AsyncOpenAI, AsyncOpenAI]:
    return (
        AsyncOpenAI(base_url=proxy.upstream, api_key=key, max_retries=0),
        AsyncOpenAI(base_url=proxy.url, api_key=key, max_retries=0),
    )


def only_record(proxy: Proxy) -> UsageRecord:
    records = proxy.records()
    assert len(records) == 1, [r.request_id for r in records]
    return records[0]


def assert_output_logged(record: UsageRecord, text: str) -> None:
    assert record.output_chars == len(text)
    assert record.output_bytes == len(text.encode())
    assert sum(record.output_profile.values()) == len(text)


def test_non_streamed_chat_is_the_same_through_the_proxy_and_leaves_one_reported_record(proxy):
    direct, via = clients(proxy)
    expected = direct.chat.completions.create(model="sim-gpt", messages=MESSAGES)

    got = via.chat.completions.create(model="sim-gpt", messages=MESSAGES)

    assert got.model_dump() == expected.model_dump()
    record = only_record(proxy)
    assert (record.source, record.account, record.model, record.endpoint) == (
        "proxy",
        proxy.account,
        "sim-gpt",
        "/v1/chat/completions",
    )
    assert (record.status_code, record.error_cause, record.stream) == (200, ErrorCause.NONE, False)
    assert (record.tokens_source, record.prompt_tokens, record.completion_tokens) == (
        "reported",
        got.usage.prompt_tokens,
        got.usage.completion_tokens,
    )
    assert (record.context_chars, record.context_bytes, record.message_count) == (24, 24, 2)
    assert record.context_profile == CONTEXT
    assert_output_logged(record, got.choices[0].message.content)
    assert record.latency_ms is not None and record.ttft_ms is None
    assert record.request_id.startswith("proxy-")
    assert record.response_id == got.id
    assert record.upstream_request_id == proxy.sim.log[-1].request_id


def test_async_client_sees_the_same_non_streamed_answer(proxy):
    async def both() -> tuple[Any, Any]:
        direct, via = async_clients(proxy)
        expected = await direct.chat.completions.create(model="sim-cjk", messages=MESSAGES)
        got = await via.chat.completions.create(model="sim-cjk", messages=MESSAGES)
        return expected, got

    expected, got = asyncio.run(both())

    assert got.model_dump() == expected.model_dump()
    record = only_record(proxy)
    assert record.prompt_tokens == got.usage.prompt_tokens
    assert record.output_profile["cjk"] > 0
    assert_output_logged(record, got.choices[0].message.content)


def test_stream_without_include_usage_reaches_the_caller_unchanged_and_is_recorded_with_exact_usage(proxy):
    direct, via = clients(proxy)
    expected = [c.model_dump() for c in direct.chat.completions.create(model="sim-gpt", messages=MESSAGES, stream=True)]
    with_usage = list(
        direct.chat.completions.create(
            model="sim-gpt", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    got = [c.model_dump() for c in via.chat.completions.create(model="sim-gpt", messages=MESSAGES, stream=True)]

    assert got == expected  # no usage chunk, no usage field: what the caller asked for
    assert all(chunk["usage"] is None and chunk["choices"] for chunk in got)
    record = only_record(proxy)
    usage = with_usage[-1].usage
    assert (record.tokens_source, record.prompt_tokens, record.completion_tokens) == (
        "reported",
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert record.stream is True
    assert_output_logged(record, "".join(c["choices"][0]["delta"]["content"] or "" for c in got))
    assert record.ttft_ms is not None and record.latency_ms is not None and record.ttft_ms <= record.latency_ms


def test_stream_with_include_usage_is_the_same_and_its_usage_is_recorded(proxy):
    async def both() -> tuple[list[Any], list[Any]]:
        direct, via = async_clients(proxy)
        options = {"include_usage": True}
        streams = []
        for client in (direct, via):
            stream = await client.chat.completions.create(
                model="sim-gpt", messages=MESSAGES, stream=True, stream_options=options
            )
            streams.append([chunk.model_dump() async for chunk in stream])
        return streams[0], streams[1]

    expected, got = asyncio.run(both())

    assert got == expected
    assert got[-1]["choices"] == [] and got[-1]["usage"] is not None
    record = only_record(proxy)
    assert (record.prompt_tokens, record.completion_tokens) == (
        got[-1]["usage"]["prompt_tokens"],
        got[-1]["usage"]["completion_tokens"],
    )


def test_the_caller_gets_the_stream_byte_for_byte_as_upstream_sends_it(proxy):
    """Stronger than the SDK's view: the `"usage":null` fields the proxy's own request adds
    to every chunk are gone too."""
    body = {"model": "sim-gpt", "messages": MESSAGES, "stream": True, "n": 2}
    headers = {"Authorization": f"Bearer {KEY}"}
    direct = httpx.post(f"{proxy.upstream}/chat/completions", json=body, headers=headers)
    got = httpx.post(f"{proxy.url}/chat/completions", json=body, headers=headers)

    assert got.status_code == 200
    assert got.content == direct.content
    assert got.headers["content-type"] == direct.headers["content-type"]
    assert b'"usage"' not in got.content
    sent_upstream = [e.body for e in proxy.sim.log if e.path == "/v1/chat/completions"][-1]
    assert sent_upstream["stream_options"] == {"include_usage": True}  # what the proxy asked for
    assert only_record(proxy).tokens_source == "reported"


def test_a_caller_that_hangs_up_mid_stream_closes_the_upstream_call_and_is_recorded_as_cancelled(proxy):
    _, via = clients(proxy)
    proxy.sim.chunk_delay = 0.05  # a model that writes slowly, so there is a "mid-stream"
    try:
        stream = via.chat.completions.create(
            model="sim-gpt", messages=MESSAGES, stream=True, max_tokens=200, stream_options={"include_usage": True}
        )
        first = next(iter(stream))
        stream.close()

        record = wait_until(lambda: proxy.records(), what="the cancelled call's record")[0]
        upstream = wait_until(
            lambda: [e for e in proxy.sim.log if e.path == "/v1/chat/completions" and e.disconnected],
            what="the simulator to see its caller leave",
        )
    finally:
        proxy.sim.chunk_delay = 0.0

    assert first.choices[0].delta.role == "assistant"
    assert len(upstream) == 1 and not upstream[0].completed
    assert (record.status_code, record.error_cause, record.error_type) == (499, "client_cancelled", "client_cancelled")
    # No usage arrived: a cancelled call is billed nothing; what was logged stays, the context in full.
    assert (record.tokens_source, record.prompt_tokens, record.completion_tokens, record.cost) == ("none", 0, 0, 0)
    assert record.context_profile == CONTEXT and record.output_chars is not None
    assert UsageRecord.objects.count() == 1


ERROR_CASES = [
    # (key, model, extra request fields, SDK exception, recorded cause)
    ("bad-key", "sim-gpt", {}, openai.AuthenticationError, ErrorCause.INVALID_API_KEY),
    ("sk-disabled-0123456789abcdef", "sim-gpt", {}, openai.AuthenticationError, ErrorCause.KEY_DISABLED),
    ("sk-noquota-0123456789abcdef", "sim-gpt", {}, openai.RateLimitError, ErrorCause.INSUFFICIENT_QUOTA),
    ("sk-ratelimited-0123456789abcd", "sim-gpt", {}, openai.RateLimitError, ErrorCause.RATE_LIMITED),
    (KEY, "gpt-nonexistent", {}, openai.NotFoundError, ErrorCause.MODEL_UNAVAILABLE),
    (KEY, "sim-gpt", {"frobnicate": True}, openai.BadRequestError, ErrorCause.UNSUPPORTED_PARAMETER),
    (KEY, "sim-broken", {}, openai.InternalServerError, ErrorCause.UPSTREAM_ERROR),
    (KEY, "sim-gpt", {"messages": []}, openai.BadRequestError, ErrorCause.OTHER),
]


@pytest.mark.parametrize(("key", "model", "extra", "raised", "cause"), ERROR_CASES, ids=[c[4] for c in ERROR_CASES])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_upstream_error_reaches_the_caller_unchanged_and_is_recorded_with_its_cause(
    proxy, key, model, extra, raised, cause, stream
):
    direct, via = clients(proxy, key)
    request = {"model": model, "messages": MESSAGES, "stream": stream, "extra_body": extra}
    if "messages" in extra:
        request["messages"] = extra["messages"]
        request["extra_body"] = {}
    errors = []
    for client in (direct, via):
        with pytest.raises(raised) as caught:
            client.chat.completions.create(**request)
        errors.append(caught.value)

    expected, got = errors
    assert (got.status_code, got.body, got.message, got.request_id) == (
        expected.status_code,
        expected.body,
        expected.message,
        expected.request_id,
    )
    record = only_record(proxy)
    assert (record.error_cause, record.status_code, record.stream) == (cause, expected.status_code, stream)
    assert record.error_type == (expected.body.get("type") or "")
    assert record.error_message == expected.body["message"]  # none of them carries a secret or the prompt
    assert record.output_chars is None  # an error body is not output


def test_an_error_message_is_recorded_without_the_prompt_it_quotes_and_without_secrets(proxy):
    secret_prompt = "Summarise the merger memo for Project Kestrel before Friday"
    _, via = clients(proxy)

    with pytest.raises(openai.BadRequestError) as caught:
        via.chat.completions.create(model="sim-moderated", messages=[{"role": "user", "content": secret_prompt}])

    assert secret_prompt in caught.value.body["message"]  # the caller still gets the whole answer
    record = only_record(proxy)
    assert (record.error_code, record.status_code) == ("content_filter", 400)
    assert record.error_message.startswith("Input rejected by the content filter")
    for kept_out in ("Kestrel", "merger memo", KEY, "abuse-desk@upstream.example"):
        assert kept_out not in record.error_message
    assert "[prompt text removed]" in record.error_message
    assert "[redacted]" in record.error_message


def test_an_upstream_that_does_not_answer_in_time_gets_a_504_and_a_timeout_record(proxy, settings):
    settings.TOKI_PROXY_TIMEOUT = 0.5
    _, via = clients(proxy)

    with pytest.raises(openai.InternalServerError) as caught:
        via.chat.completions.create(model="sim-slow", messages=MESSAGES)

    assert caught.value.status_code == 504
    assert caught.value.body["type"] == "timeout" and caught.value.body["code"] == "upstream_timeout"
    record = only_record(proxy)
    assert (record.error_cause, record.status_code) == (ErrorCause.TIMEOUT, 504)
    # The proxy gave up on the upstream call: the simulator saw it leave.
    wait_until(lambda: any(e.disconnected for e in proxy.sim.log), what="the upstream call to be closed")


def test_an_unreachable_upstream_gets_a_502_and_an_upstream_error_record(proxy):
    closed = httpx.URL(proxy.upstream).copy_with(port=1)  # nothing listens on port 1
    proxy.account.base_url = str(closed)
    proxy.account.save()
    _, via = clients(proxy)

    with pytest.raises(openai.InternalServerError) as caught:
        via.chat.completions.create(model="sim-gpt", messages=MESSAGES, extra_headers={"X-Toki-Team": "search"})

    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unreachable"
    record = only_record(proxy)
    assert (record.error_cause, record.status_code, record.team) == (ErrorCause.UPSTREAM_ERROR, 502, "search")


def test_a_stream_the_upstream_cuts_off_is_cut_off_for_the_caller_and_recorded(proxy):
    direct, via = clients(proxy)
    expected: list[Any] = []
    direct_stream = direct.chat.completions.create(model="sim-drop", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as direct_error:
        expected.extend(direct_stream)
    received: list[Any] = []
    stream = via.chat.completions.create(model="sim-drop", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as proxied_error:  # the SDK sees the connection break, as directly
        received.extend(stream)

    assert type(proxied_error.value) is type(direct_error.value)
    assert [c.model_dump() for c in received] == [c.model_dump() for c in expected]

    assert len(received) == 3
    record = only_record(proxy)
    assert (record.error_cause, record.status_code, record.error_code) == (
        ErrorCause.UPSTREAM_ERROR,
        502,
        "stream_interrupted",
    )
    # Cut off before any usage arrived: billed nothing, what was produced is logged.
    assert (record.tokens_source, record.prompt_tokens, record.completion_tokens, record.cost) == ("none", 0, 0, 0)
    assert record.output_chars == sum(len(c.choices[0].delta.content or "") for c in received)


def test_tool_calls_and_several_choices_count_their_arguments_as_output(proxy):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            },
        }
    ]
    direct, via = clients(proxy)
    for stream in (False, True):
        request = {"model": "sim-gpt", "messages": MESSAGES, "tools": tools, "n": 2, "stream": stream}
        expected = direct.chat.completions.create(**request)
        got = via.chat.completions.create(**request)
        if stream:
            expected, got = [c.model_dump() for c in expected], [c.model_dump() for c in got]
            assert got == expected
        else:
            assert got.model_dump() == expected.model_dump()
            arguments = "".join(c.message.tool_calls[0].function.arguments for c in got.choices)

    records = proxy.records()
    assert len(records) == 2
    for record in records:
        assert record.message_count == 3  # two messages and one tool definition
        assert record.context_chars > 24  # the tool definition is context
        assert_output_logged(record, arguments)


def test_every_path_and_method_is_forwarded_and_only_model_calls_are_recorded(proxy):
    direct, via = clients(proxy)
    assert [m.id for m in via.models.list()] == [m.id for m in direct.models.list()]

    answer = httpx.request(
        "DELETE", f"{proxy.url}/echo/files/abc?purpose=test", headers={"Authorization": f"Bearer {KEY}"}, content=b"x"
    )

    assert answer.json() == {
        "method": "DELETE",
        "path": "/v1/echo/files/abc",
        "query": "purpose=test",
        "body": "x",
        "authorization": f"Bearer {KEY}",
    }
    assert proxy.records() == []


def test_completions_embeddings_and_responses_are_recorded_with_their_usage(proxy):
    direct, via = clients(proxy)
    completion = via.completions.create(model="sim-gpt", prompt="Say hello")
    assert completion.model_dump() == direct.completions.create(model="sim-gpt", prompt="Say hello").model_dump()
    embedding = via.embeddings.create(model="sim-gpt", input=["one", "two words"])
    response = via.responses.create(model="sim-gpt", input="Hi there", instructions="Be brief.")
    streamed = list(via.responses.create(model="sim-cjk", input="你好", stream=True))

    records = {r.endpoint + (" stream" if r.stream else ""): r for r in proxy.records()}
    assert set(records) == {"/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/responses stream"}
    assert records["/v1/completions"].completion_tokens == completion.usage.completion_tokens
    assert_output_logged(records["/v1/completions"], completion.choices[0].text)
    embedded = records["/v1/embeddings"]
    assert (embedded.prompt_tokens, embedded.message_count, embedded.context_chars) == (
        embedding.usage.prompt_tokens,
        2,
        len("one") + len("two words"),
    )
    assert embedded.output_chars is None
    answered = records["/v1/responses"]
    assert (answered.prompt_tokens, answered.completion_tokens) == (
        response.usage.input_tokens,
        response.usage.output_tokens,
    )
    assert answered.message_count == 2 and answered.context_chars == len("Hi there") + len("Be brief.")
    assert_output_logged(answered, response.output_text)
    final = streamed[-1].response
    assert records["/v1/responses stream"].completion_tokens == final.usage.output_tokens
    assert_output_logged(records["/v1/responses stream"], final.output_text)


def test_the_callers_key_is_kept_only_as_a_hash_and_its_last_four(proxy):
    _, via = clients(proxy)
    via.chat.completions.create(model="sim-gpt", messages=MESSAGES)

    record = only_record(proxy)
    key = ApiKey.objects.get()
    assert record.api_key == key
    assert key.fingerprint.startswith("sha256:") and key.last4 == KEY[-4:]
    stored = [*UsageRecord.objects.values_list(), *ApiKey.objects.values_list()]
    assert KEY not in repr(stored)


def test_a_key_of_another_shape_is_not_mistaken_for_a_name(proxy):
    secret = "AbCdEfGh-secret-of-some-other-provider-9876"
    httpx.post(
        f"{proxy.url}/chat/completions",
        json={"model": "sim-gpt", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {secret}"},
    )

    only_record(proxy)
    key = ApiKey.objects.get()
    assert secret not in repr([*UsageRecord.objects.values_list(), *ApiKey.objects.values_list()])
    assert key.name.startswith("key …9876 #")


def test_an_account_slug_picks_the_account_and_an_unknown_one_is_an_openai_style_404(proxy):
    other = type(proxy.account).objects.create(name="Beta", slug="beta", base_url=proxy.upstream)
    beta = OpenAI(base_url=proxy.url_for("beta"), api_key=KEY, max_retries=0)
    beta.chat.completions.create(model="sim-gpt", messages=MESSAGES)

    with pytest.raises(openai.NotFoundError) as caught:
        OpenAI(base_url=proxy.url_for("nobody"), api_key=KEY, max_retries=0).models.list()

    assert caught.value.body["code"] == "account_not_found"
    assert [r.account for r in proxy.records()] == [other]


def test_a_model_that_refuses_stream_options_still_streams_and_is_not_asked_again(proxy):
    direct, via = clients(proxy)
    expected = [
        c.model_dump() for c in direct.chat.completions.create(model="sim-strict", messages=MESSAGES, stream=True)
    ]
    proxy.sim.log.clear()

    first = [c.model_dump() for c in via.chat.completions.create(model="sim-strict", messages=MESSAGES, stream=True)]
    second = [c.model_dump() for c in via.chat.completions.create(model="sim-strict", messages=MESSAGES, stream=True)]

    assert first == second == expected
    # The first call was tried with the option, refused, then sent as the caller sent it;
    # the second went as sent straight away.
    asked = ["stream_options" in e.body for e in proxy.sim.log]
    assert asked == [True, False, False]
    records = proxy.records()
    assert [r.tokens_source for r in records] == ["estimated", "estimated"]
    assert all(r.error_cause == ErrorCause.NONE and r.estimator_version for r in records)


def test_the_proxy_records_the_names_of_the_optional_parameters_a_call_used_never_their_values(proxy):
    tools = [{"type": "function", "function": {"name": "lookup_invoice_zq81", "parameters": {"type": "object"}}}]
    _, via = clients(proxy)

    stream = via.chat.completions.create(
        model="sim-gpt",
        messages=MESSAGES,
        tools=tools,
        tool_choice="auto",
        response_format={"type": "json_object"},
        temperature=0.37,
        seed=918273,
        stream=True,
        stream_options={"include_usage": True},
    )
    for _ in stream:  # read to the end: closed early, the call is recorded as cancelled by the client
        pass
    with pytest.raises(openai.BadRequestError):
        via.chat.completions.create(
            model="sim-gpt", messages=MESSAGES, logprobs=True, extra_body={"frobnicate": "value_zz42"}
        )

    records = {r.error_cause: r for r in proxy.records()}
    assert len(records) == 2
    ok, failed = records[ErrorCause.NONE], records[ErrorCause.UNSUPPORTED_PARAMETER]
    assert parameters.names_of(ok.request_params) == [
        "stream", "stream_options", "tools", "tool_choice", "response_format", "seed", "temperature",
    ]  # fmt: skip
    assert parameters.names_of(failed.request_params) == ["logprobs", parameters.OTHER]
    stored = json.dumps(list(UsageRecord.objects.values()), default=str)
    for value in ("lookup_invoice_zq81", "918273", "0.37", "json_object", "value_zz42"):
        assert value not in stored
    accepted = set(AcceptedParameter.objects.filter(model="sim-gpt").values_list("parameter", flat=True))
    assert accepted == {"stream", "stream_options", "tools", "tool_choice", "response_format", "seed", "temperature"}
