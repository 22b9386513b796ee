"""What the proxy measures: the character-class profile of docs/api.md (checked against
the contract's definition, code point by code point), the texts of requests and
responses, and its handling of SSE."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from usage.proxy import measure, sse
from usage.proxy.forwarding import with_usage_option

CJK_RANGES = ((0x3000, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF))


def contract_class(char: str) -> str:
    """docs/api.md, Character-class profile, literally; the CJK ranges come first (U+3000 is CJK, not a space)."""
    code = ord(char)
    if any(low <= code <= high for low, high in CJK_RANGES):
        return "cjk"
    if ("A" <= char <= "Z") or ("a" <= char <= "z"):
        return "letters"
    if "0" <= char <= "9":
        return "digits"
    if char.isspace():
        return "spaces"
    if 0x21 <= code <= 0x7E:
        return "punct"
    return "other"


def contract_profile(text: str) -> dict[str, int]:
    counts = dict.fromkeys(("cjk", "letters", "digits", "spaces", "punct", "other"), 0)
    for char in text:
        counts[contract_class(char)] += 1
    return counts


def test_every_code_point_is_classed_as_the_contract_says():
    block = 4096
    for start in range(0, 0x110000, block):
        text = "".join(chr(code) for code in range(start, min(start + block, 0x110000)))
        assert measure.profile(text) == contract_profile(text), f"block starting at U+{start:04X}"


@given(st.text(alphabet=st.characters(codec=None)))
def test_the_profile_of_any_text_is_the_contracts(text):
    assert measure.profile(text) == contract_profile(text)


@given(st.text())
def test_text_stats_count_code_points_and_utf8_bytes(text):
    stats = measure.text_stats([text[: len(text) // 2], text[len(text) // 2 :]])
    assert stats.chars == len(text)
    assert stats.bytes == len(text.encode("utf-8", "surrogatepass"))
    assert sum(stats.profile.values()) == len(text)


def test_chat_context_counts_text_parts_tool_calls_and_tool_definitions():
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Sys"},
            {"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "content": "42"},
        ],
        "tools": [tool],
    }

    pieces, count = measure.context_text(measure.CHAT, body)

    assert pieces == ["Sys", "Look", "f", "{}", "42", json.dumps(tool["function"], separators=(",", ":"))]
    assert count == 5


def test_chat_output_counts_content_refusal_reasoning_and_tool_call_arguments_of_every_choice():
    body = {
        "choices": [
            {"message": {"content": "Hi", "reasoning_content": "hm", "refusal": None}},
            {
                "message": {
                    "content": None,
                    "refusal": "No",
                    "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
                }
            },
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        "id": "chatcmpl-1",
    }

    out = measure.response_output(measure.CHAT, body)

    assert (out.pieces, out.usage, out.response_id) == (["Hi", "hm", "No", "{}"], body["usage"], "chatcmpl-1")


def test_stream_output_takes_the_deltas_and_the_last_usage():
    events = [
        {"id": "c1", "choices": [{"delta": {"role": "assistant", "content": ""}}], "usage": None},
        {"id": "c1", "choices": [{"delta": {"content": "你好"}}, {"delta": {"content": "Hi"}}], "usage": None},
        {"id": "c1", "choices": [{"delta": {"tool_calls": [{"function": {"arguments": '{"a"'}}]}}]},
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}},
    ]

    out = measure.stream_output(measure.CHAT, events)

    assert out.pieces == ["", "你好", "Hi", '{"a"']
    assert out.usage == {"prompt_tokens": 5, "completion_tokens": 3}


def test_responses_stream_output_reads_deltas_and_the_final_usage():
    events = [
        {"type": "response.created", "response": {"id": "resp_1", "usage": None}},
        {"type": "response.output_text.delta", "delta": "Hel"},
        {"type": "response.output_text.delta", "delta": "lo"},
        {"type": "response.completed", "response": {"id": "resp_1", "usage": {"input_tokens": 2, "output_tokens": 1}}},
    ]

    out = measure.stream_output(measure.RESPONSES, events)

    assert (out.pieces, out.usage, out.response_id) == (
        ["Hel", "lo"],
        {"input_tokens": 2, "output_tokens": 1},
        "resp_1",
    )


STREAM = (
    b'data: {"id":"1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}\n\n'
    b'data: {"id":"1","choices":[{"index":0,"delta":{"content":"Hi \\"usage\\":null"}}],"usage":null}\n\n'
    b'data: {"id":"1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_events_come_out_whole_however_the_stream_is_cut_into_chunks(cuts):
    bounds = sorted({0, len(STREAM), *cuts})
    splitter = sse.EventSplitter()
    events = [e for a, b in itertools.pairwise(bounds) for e in splitter.feed(STREAM[a:b])]
    assert b"".join(events) == STREAM
    assert len(events) == 4
    assert splitter.rest() == b""


def test_the_usage_the_proxy_asked_for_is_taken_out_and_nothing_else():
    events = sse.EventSplitter().feed(STREAM)

    kept = [sse.without_requested_usage(event) for event in events]

    assert kept[0] == b'data: {"id":"1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    # "usage":null inside the text is text, and stays.
    assert kept[1] == b'data: {"id":"1","choices":[{"index":0,"delta":{"content":"Hi \\"usage\\":null"}}]}\n\n'
    assert kept[2] is None
    assert kept[3] == b"data: [DONE]\n\n"


def test_time_to_first_token_waits_for_generated_text():
    first, second = sse.EventSplitter().feed(STREAM)[:2]
    assert not sse.carries_output(first)  # the role chunk: content is empty
    assert sse.carries_output(second)


def test_asking_for_usage_adds_the_option_and_keeps_the_callers_bytes():
    body = b'{"model": "m", "stream": true, "messages": []}\n'

    changed = with_usage_option(body, json.loads(body))

    assert changed == b'{"model": "m", "stream": true, "messages": [],"stream_options":{"include_usage":true}}'
    assert json.loads(changed)["stream_options"] == {"include_usage": True}
    options = b'{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}'
    assert json.loads(with_usage_option(options, json.loads(options)))["stream_options"] == {
        "include_usage": True,
        "x": 1,
    }


def test_only_model_calls_are_recorded():
    assert measure.recorded_kind("POST", "/chat/completions") == measure.CHAT
    assert measure.recorded_kind("POST", "/responses") == measure.RESPONSES
    assert measure.recorded_kind("GET", "/responses") is None
    assert measure.recorded_kind("POST", "/files") is None
