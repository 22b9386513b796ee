"""The compiled decoding path (usage.wire) never accepts what the schema (RecordIn) refuses,
and what it accepts it reads exactly as the schema does: same fields, same digests, same row."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from usage import json_input, schemas, wire
from usage.ingestion import NOT_CONTENT, canonical_json, content_hash, legacy_content_hash, lengths_of, sent_fields

NOW = datetime.now(UTC)

# Each field mostly plausible, now and then odd: so that both paths accept often and the
# odd values (bounds, types, spellings) meet the compiled path one or two at a time.
odd_texts = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        ["", " ", "name:", "name: ", "\x7f", "a\x00b", "\u2028", "sk-" + "a" * 24, "Bearer sk-" + "b" * 24]
    ),
    st.text(min_size=195, max_size=205),
)
plain_texts = st.text(alphabet=st.characters(codec="utf-8", min_codepoint=32), min_size=1, max_size=12)
odd_numbers = st.one_of(
    st.integers(-2, -1),
    st.integers(10**9 - 1, 10**9 + 1),
    st.just(2_000_000_001),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just("7"),
    st.just(3.0),
)
counts = st.integers(0, 5000)


def _sometimes_odd(plain: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.integers(0, 5).flatmap(lambda roll: odd if roll == 0 else plain)


def _instant(draw: st.DrawFn) -> Any:
    moment = NOW - timedelta(seconds=draw(st.integers(0, 10**8)), microseconds=draw(st.integers(0, 999_999)))
    if draw(st.integers(0, 5)) == 0:
        moment = draw(
            st.one_of(
                st.datetimes(datetime(1999, 12, 31), datetime(2030, 1, 1), timezones=st.just(UTC)),
                st.just(NOW + timedelta(seconds=draw(st.integers(200, 400)))),
            )
        )
    minutes = draw(st.sampled_from([0, 0, 60, -330, 23 * 60 + 59]))
    offset = timedelta(minutes=minutes)
    local = moment.astimezone(UTC).replace(tzinfo=None) + offset
    sign = "+" if minutes >= 0 else "-"
    zone = "Z" if not minutes else f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    separator, fraction = "T", f".{local.microsecond:06d}"
    if draw(st.integers(0, 3)) == 0:  # other spellings of an instant
        zone = draw(st.sampled_from([zone, zone.lower(), "", "+00:00", "-00:00"]))
        separator = draw(st.sampled_from(["T", "t", " "]))
        fraction = draw(st.sampled_from(["", ".5", fraction.rstrip("0") or ".0", ".1234567", ".000000001", ",5"]))
    text = local.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + fraction + zone
    return draw(_sometimes_odd(st.just(text), st.sampled_from([text[:16], int(moment.timestamp()), None])))


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    text = _sometimes_odd(plain_texts, odd_texts)
    number = _sometimes_odd(counts, odd_numbers)
    record: dict[str, Any] = {
        "request_id": draw(text),
        "occurred_at": _instant(draw),
        "model": draw(_sometimes_odd(st.sampled_from(["gpt-4o", "qwen-max"]), odd_texts)),
    }
    details = st.fixed_dictionaries({}, optional={"cached_tokens": number, "reasoning_tokens": number})
    optional: dict[str, st.SearchStrategy[Any]] = {
        "api_key": _sometimes_odd(st.sampled_from(["name:ops", "ops", "sk-" + "k" * 30, " name: ops "]), odd_texts),
        "endpoint": text,
        "stream": _sometimes_odd(st.booleans(), st.just(1)),
        "status_code": _sometimes_odd(st.sampled_from([200, 400, 429, 500, 502]), st.sampled_from([99, 600, "200"])),
        "error": _sometimes_odd(
            st.fixed_dictionaries(
                {},
                optional={
                    "type": text,
                    "code": st.one_of(text, number),
                    "message": text,
                    "param": text,
                },
            ),
            st.just("boom"),
        ),
        "usage": st.fixed_dictionaries(
            {},
            optional={
                "prompt_tokens": number,
                "completion_tokens": number,
                "input_tokens": number,
                "output_tokens": number,
                "total_tokens": number,
                "prompt_tokens_details": details,
                "input_tokens_details": details,
                "completion_tokens_details": details,
                "extra": text,
            },
        ),
        "context_chars": number,
        "output_bytes": number,
        "message_count": number,
        "context_profile": st.fixed_dictionaries(
            {},
            optional={"cjk": number, "letters": number, "other": number, "emoji": _sometimes_odd(st.nothing(), number)},
        ),
        "output_profile": st.fixed_dictionaries({"letters": number, "digits": number}),
        "latency_ms": _sometimes_odd(counts, st.one_of(odd_numbers, st.just(86_400_001))),
        "ttft_ms": number,
        "cost": _sometimes_odd(st.nothing(), st.sampled_from(["0.0125", 1e-3, 7, "1E+3"])),
        "metadata": _sometimes_odd(
            st.dictionaries(plain_texts, plain_texts, max_size=3),
            st.one_of(
                st.fixed_dictionaries({"team": st.text(min_size=99, max_size=101)}),
                st.fixed_dictionaries({"notes": st.text(min_size=600, max_size=800)}),
                st.fixed_dictionaries({"notes": st.just("\x01" * 700)}),
                st.just({"team": 5}),
            ),
        ),
        "response_id": text,
        "upstream_request_id": text,
        "parameters": _sometimes_odd(
            st.lists(st.sampled_from(["tools", "seed", "response_format"]), max_size=3),
            st.one_of(st.lists(odd_texts, max_size=2), st.lists(st.just("tools"), min_size=64, max_size=65)),
        ),
        "unknown_field": _sometimes_odd(st.nothing(), text),
    }
    for name in draw(st.sets(st.sampled_from(sorted(optional)), max_size=8)):
        value = draw(st.one_of(optional[name], st.nothing()) if name in ("cost", "unknown_field") else optional[name])
        record[name] = value
    return {name: value for name, value in record.items() if value is not None or draw(st.booleans())}


def _judged(item: Any) -> schemas.RecordIn | None:
    valid, _rejected = schemas.validate_records([item])
    return valid[0][1] if valid else None


def _assert_read_alike(fast: wire.Record, reference: schemas.RecordIn) -> None:
    assert sent_fields(fast) == reference.model_dump(mode="json", exclude_none=True)
    assert content_hash(fast) == content_hash(reference)
    assert legacy_content_hash(fast) == legacy_content_hash(reference)
    assert lengths_of(fast) == lengths_of(reference)
    assert fast.occurred_at == reference.occurred_at
    assert fast.occurred_at.utcoffset() == reference.occurred_at.utcoffset()
    if reference.usage is not None:
        assert fast.usage is not None
        got = (fast.usage.prompt, fast.usage.completion, fast.usage.cached, fast.usage.reasoning)
        assert got == (
            reference.usage.prompt,
            reference.usage.completion,
            reference.usage.cached,
            reference.usage.reasoning,
        )


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(record=records(), ascii_only=st.booleans())
@example(record={"request_id": "a", "occurred_at": "2026-01-01T00:00:00.1234567Z", "model": "m"}, ascii_only=False)
@example(record={"request_id": "a\x00", "occurred_at": "2026-01-01T00:00:00Z", "model": "m"}, ascii_only=True)
@example(record={"request_id": "\ud800", "occurred_at": "2026-01-01T00:00:00Z", "model": "m"}, ascii_only=True)
def test_a_json_line_the_compiled_path_accepts_is_accepted_by_the_schema_and_read_alike(record, ascii_only):
    try:
        line = json.dumps(record, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return
    fast = wire.decode_line(line, timezone.now())
    try:
        parsed = json_input.loads(line)
    except ValueError:
        assert fast is None
        return
    reference = _judged(parsed)
    event(f"compiled path: {'accepted' if fast else 'declined'}; schema: {'accepted' if reference else 'refused'}")
    if fast is not None:
        assert reference is not None, f"the compiled path accepted what the schema refuses: {record!r}"
        _assert_read_alike(fast, reference)


@SETTINGS
@given(record=records())
def test_a_python_record_the_compiled_path_accepts_is_accepted_by_the_schema_and_read_alike(record):
    fast = wire.convert(record, timezone.now())
    reference = _judged(record)
    event(f"compiled path: {'accepted' if fast else 'declined'}; schema: {'accepted' if reference else 'refused'}")
    if fast is not None:
        assert reference is not None, f"the compiled path accepted what the schema refuses: {record!r}"
        _assert_read_alike(fast, reference)


@SETTINGS
@given(batch=st.lists(records(), min_size=0, max_size=4))
def test_a_body_the_compiled_path_accepts_holds_only_records_the_schema_accepts(batch):
    body = json.dumps({"records": batch}).encode()
    fast = wire.decode_body(body, max_records=3)
    if fast is not None:
        assert 1 <= len(batch) <= 3
        for record, decoded in zip(batch, fast, strict=True):
            reference = _judged(record)
            assert reference is not None
            _assert_read_alike(decoded, reference)


def _plain(index: int) -> dict[str, Any]:
    return {
        "request_id": f"plain-{index}",
        "occurred_at": (NOW - timedelta(minutes=index)).isoformat(),
        "model": "gpt-4o-mini",
        "api_key": "name:search",
        "stream": True,
        "usage": {"prompt_tokens": 900, "completion_tokens": 200, "prompt_tokens_details": {"cached_tokens": 300}},
        "latency_ms": 1200,
        "ttft_ms": 300,
        "metadata": {"team": "search", "feature": "chat", "user": "中文"},
        "parameters": ["tools"],
        "response_id": f"chatcmpl-{index}",
    }


def test_plainly_valid_records_take_the_compiled_path_on_every_route():
    plain = [_plain(index) for index in range(3)]
    now = timezone.now()
    lines = [wire.decode_line(json.dumps(record).encode(), now) for record in plain]
    assert all(isinstance(record, wire.Record) for record in lines)
    assert all(isinstance(wire.convert(record, now), wire.Record) for record in plain)
    body = wire.decode_body(json.dumps({"records": plain}).encode(), max_records=10)
    assert body is not None and len(body) == 3
    for decoded, record in zip(lines, plain, strict=True):
        reference = _judged(record)
        assert decoded is not None and reference is not None
        _assert_read_alike(decoded, reference)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"cost": "0.01"}, "a cost is the schema's to judge"),
        ({"occurred_at": "2026-01-01T00:00:00.1234567Z"}, "seven fractional digits"),
        ({"metadata": {"team": "x" * 101}}, "a team name too long"),
        ({"api_key": "name:  "}, "a declared key without a name"),
        ({"usage": {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 2}}}, "cached beyond the prompt"),
        ({"request_id": "a\x00b"}, "a NUL"),
        ({"occurred_at": "in six minutes"}, "in the future"),
    ],
)
def test_what_the_compiled_path_does_not_judge_goes_to_the_schema(change, why):
    if change.get("occurred_at") == "in six minutes":
        change = {"occurred_at": (timezone.now() + timedelta(minutes=6)).isoformat()}
    record = _plain(0) | change
    assert wire.decode_line(json.dumps(record).encode(), timezone.now()) is None, why
    assert wire.convert(record, timezone.now()) is None, why


def test_validate_records_reports_rejections_by_their_index_in_the_whole_batch():
    batch = [_plain(0), {"request_id": "bad"}, _plain(1), _plain(2) | {"status_code": "200"}]
    valid, rejected = wire.validate_records(batch)
    assert [index for index, _ in valid] == [0, 2]
    assert [(r["index"], r["field"]) for r in rejected] == [(1, "occurred_at"), (3, "status_code")]
    assert (valid, rejected) != ([], [])
    reference_valid, reference_rejected = schemas.validate_records(batch)
    assert rejected == reference_rejected
    assert [i for i, _ in reference_valid] == [i for i, _ in valid]


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(), inner, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(payload=st.dictionaries(st.text(), json_values, max_size=5))
def test_canonical_json_is_exactly_the_sorted_compact_stdlib_encoding(payload):
    assert canonical_json(payload) == json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


@SETTINGS
@given(record=records())
def test_the_content_hash_is_the_digest_records_were_stored_with(record):
    reference = _judged(record)
    if reference is None:
        return
    # The definition records were stored under (a replay must still match them).
    update: dict[str, Any] = {"occurred_at": reference.occurred_at.astimezone(UTC)}
    if reference.api_key is not None and reference.api_key.strip().startswith("name:"):
        update["api_key"] = reference.api_key.strip()[len("name:") :].strip()
    before = reference.model_copy(update=update).model_dump(mode="json", exclude_none=True, exclude=set(NOT_CONTENT))
    digest = hashlib.sha256(json.dumps(before, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert content_hash(reference) == digest


@pytest.mark.parametrize(
    ("compiled", "schema"),
    [
        (wire.Record, schemas.RecordIn),
        (wire.UsageBody, schemas.UsageBody),
        (wire.TokenDetails, schemas.TokenDetails),
        (wire.ErrorBody, schemas.ErrorBody),
        (wire.Profile, schemas.Profile),
    ],
)
def test_the_compiled_record_has_the_schemas_fields_in_its_order(compiled, schema):
    # A field added to the schema and not here would be refused as unknown by the fast path.
    assert compiled.__struct_fields__ == tuple(schema.model_fields)
