"""Ingestion records decoded in compiled code when they are plainly valid.

`usage.schemas.RecordIn` (pydantic) defines the ingestion record: its rules and the words
of every rejection. Validating with it costs about 30 µs of Python per record, most of an
import's time; msgspec decodes the same JSON straight into the `Record` struct below in
about 3 µs, every type, bound and unknown field checked in C. So a record is decoded here
first and kept when msgspec and `_plainly_valid` both accept it; anything else (a
rejection, and forms this path does not try to judge: a reported `cost`, a `\\u0000`
escape, a timestamp finer than microseconds) is validated again by `RecordIn`, which
decides and explains. The fast path may refuse more than RecordIn, never less, and gives
the same values: tests/usage/test_wire.py holds the two to that on generated records.

Downstream (`usage.ingestion`, `usage.services`) reads either kind through the same
attribute names: `IngestRecord`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from django.utils import timezone

from usage import schemas
from usage.schemas import (
    EARLIEST_OCCURRED_AT,
    FUTURE_TOLERANCE,
    KEY_NAME_PREFIX,
    MAX_LENGTH,
    MAX_METADATA_BYTES,
    MAX_TEAM_LENGTH,
    MAX_TOKENS,
    RecordIn,
    UsageReading,
)

Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
Length = Annotated[int, msgspec.Meta(ge=0, le=MAX_LENGTH)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=86_400_000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Parameters = Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]], msgspec.Meta(max_length=64)]


# RFC 3339 as msgspec reads it in C, which is as RecordIn reads it, but for a seventh
# fractional digit: msgspec rounds it where pydantic truncates. A text holding one anywhere
# (`FINER_THAN_MICROSECONDS`) is left to RecordIn; a false alarm only costs the slower path.
Instant = Annotated[datetime, msgspec.Meta(tz=True)]
FINER_THAN_MICROSECONDS = re.compile(rb"\d:\d\d[.,]\d{7}")
_FINER_TEXT = re.compile(FINER_THAN_MICROSECONDS.pattern.decode())
_OCCURRED_AT_KEY = b'"occurred_at"'
_INSTANT_WITHIN = 64  # bytes after the key: room for spaces and the longest instant


def _has_finer_instant(document: bytes) -> bool:
    """Whether an `occurred_at` in the JSON document may be finer than microseconds (only the
    text after each such key is searched; a key spelled with escapes counts as a yes)."""
    at = document.find(_OCCURRED_AT_KEY)
    if at < 0:
        return b"\\u" in document  # no plain key: it may be spelled with escapes
    while at >= 0:
        if FINER_THAN_MICROSECONDS.search(document, at, at + _INSTANT_WITHIN):
            return True
        at = document.find(_OCCURRED_AT_KEY, at + 1)
    return False


class Profile(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    cjk: Length = 0
    letters: Length = 0
    digits: Length = 0
    spaces: Length = 0
    punct: Length = 0
    other: Length = 0


class ErrorBody(msgspec.Struct, omit_defaults=True, gc=False):
    type: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    code: str | int | None = None
    message: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None


class TokenDetails(msgspec.Struct, omit_defaults=True, gc=False):
    cached_tokens: Count | None = None
    reasoning_tokens: Count | None = None


class UsageBody(msgspec.Struct, UsageReading, omit_defaults=True, gc=False):
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    total_tokens: Count | None = None
    prompt_tokens_details: TokenDetails | None = None
    completion_tokens_details: TokenDetails | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    input_tokens_details: TokenDetails | None = None
    output_tokens_details: TokenDetails | None = None


class Record(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """RecordIn's fields, types and bounds (the checks msgspec cannot state are `_plainly_valid`)."""

    request_id: Name
    occurred_at: Instant
    model: Name
    api_key: Name | None = None
    endpoint: Name = "/v1/chat/completions"
    stream: bool = False
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)] = 200
    error: ErrorBody | None = None
    usage: UsageBody | None = None
    context_chars: Length | None = None
    context_bytes: Length | None = None
    output_chars: Length | None = None
    output_bytes: Length | None = None
    message_count: Length | None = None
    context_profile: Profile | None = None
    output_profile: Profile | None = None
    latency_ms: Millis | None = None
    ttft_ms: Millis | None = None
    cost: Decimal | None = None
    metadata: dict[str, str] = {}
    response_id: Name | None = None
    upstream_request_id: Name | None = None
    parameters: (
        Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]], msgspec.Meta(max_length=64)] | None
    ) = None


IngestRecord = RecordIn | Record

# Record's fields whose default is not None (endpoint, stream, status_code, metadata):
# omit_defaults leaves them out at their default, where RecordIn's dump keeps them.
_VALUED_DEFAULTS = tuple(
    (field.encode_name, field.default_factory if field.default is msgspec.NODEFAULT else field.default)
    for field in msgspec.structs.fields(Record)
    if field.default is not None
    and (field.default is not msgspec.NODEFAULT or field.default_factory is not msgspec.NODEFAULT)
)


def json_instant(moment: datetime) -> str:
    """An instant as pydantic writes it in JSON: ISO 8601, UTC as `Z`."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def sent_fields(record: Record, *, occurred_at: datetime | None = None) -> dict[str, Any]:
    """What `RecordIn.model_dump(mode="json", exclude_none=True)` gives for the same record:
    the fields sent, as JSON values, without those left out (None). In compiled code.
    `occurred_at`: the instant to write instead of the one sent (the same, in UTC)."""
    fields: dict[str, Any] = msgspec.to_builtins(record, builtin_types=(datetime,))
    fields["occurred_at"] = json_instant(occurred_at or record.occurred_at)
    for name, default in _VALUED_DEFAULTS:
        if name not in fields:
            fields[name] = default() if callable(default) else default
    return fields


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    records: list[Record]


_RECORD = msgspec.json.Decoder(Record)
_BODY = msgspec.json.Decoder(_Body)
_ENCODE = msgspec.json.encode
NUL_ESCAPE = b"\\u0000"  # JSON's only way to a NUL, which PostgreSQL cannot store
# JSON escapes a character in at most 6 bytes (\u001f): metadata this small is surely within bounds.
_SURELY_SMALL_METADATA = MAX_METADATA_BYTES // 6


def _plainly_valid(record: Record, now: datetime) -> bool:
    """The rules of RecordIn beyond types and bounds: True when they surely hold."""
    try:
        utc = record.occurred_at.astimezone(UTC)
    except OverflowError:
        return False
    if not EARLIEST_OCCURRED_AT <= utc <= now + FUTURE_TOLERANCE:
        return False
    if (key := record.api_key) is not None:
        key = key.strip()
        if not key or (key.startswith(KEY_NAME_PREFIX) and not key[len(KEY_NAME_PREFIX) :].strip()):
            return False
    if record.cost is not None:  # decimal places, strings and exponents: RecordIn's to judge
        return False
    usage = record.usage
    if usage is not None and (
        (usage.prompt is None and usage.completion is None) or usage.cached > (usage.prompt or 0)
    ):
        return False
    metadata = record.metadata
    if metadata:
        if len(metadata.get("team", "")) > MAX_TEAM_LENGTH:
            return False
        if len(_ENCODE(metadata)) + 2 * len(metadata) > _SURELY_SMALL_METADATA:
            return len(json.dumps(metadata, ensure_ascii=False).encode()) <= MAX_METADATA_BYTES
    return True


def decode_line(line: bytes, now: datetime) -> Record | None:
    """The record of one JSON line when it is plainly valid, else None (RecordIn decides)."""
    if NUL_ESCAPE in line or _has_finer_instant(line):
        return None
    try:
        record = _RECORD.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return record if _plainly_valid(record, now) else None


def decode_body(body: bytes, *, max_records: int) -> list[Record] | None:
    """Every record of an ingestion body `{"records": [...]}` when all are plainly valid and
    there are 1 to `max_records` of them; else None: the body is read and judged the slow way."""
    if NUL_ESCAPE in body or _has_finer_instant(body):
        return None
    try:
        records = _BODY.decode(body).records
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    now = timezone.now()
    if not 0 < len(records) <= max_records or not all(_plainly_valid(r, now) for r in records):
        return None
    return records


def convert(item: Any, now: datetime) -> Record | None:
    """A record given as Python values (a parsed JSON object, a CSV row's fields) when it is
    plainly valid, else None."""
    if not isinstance(item, dict):
        return None
    sent_at = item.get("occurred_at")
    if isinstance(sent_at, str) and _FINER_TEXT.search(sent_at):
        return None
    try:
        record = msgspec.convert(item, Record)
    except msgspec.ValidationError:
        return None
    return record if _texts_storable(record) and _plainly_valid(record, now) else None


def _texts_storable(record: Record) -> bool:
    """No NUL and no lone surrogate in any text (JSON input is checked for both as bytes)."""
    texts: list[str] = [record.request_id, record.model, record.endpoint]
    for optional in (record.api_key, record.response_id, record.upstream_request_id):
        if optional is not None:
            texts.append(optional)
    if record.error is not None:
        texts.extend(t for t in (record.error.type, record.error.message, record.error.code) if isinstance(t, str))
    texts.extend(record.metadata)
    texts.extend(record.metadata.values())
    texts.extend(record.parameters or ())
    return all(_storable(text) for text in texts)


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def plain_records(items: Sequence[Any]) -> list[Record | None]:
    """For each item, its Record when it is one already or plainly valid, else None."""
    now = timezone.now()
    return [item if isinstance(item, Record) else convert(item, now) for item in items]


def validate_records(items: Sequence[Any]) -> tuple[list[tuple[int, IngestRecord]], list[dict[str, Any]]]:
    """`usage.schemas.validate_records` (valid records with their index, one rejection per
    invalid record), with the plainly valid ones decoded here and only the rest given to RecordIn."""
    plain = plain_records(items)
    rest = [index for index, record in enumerate(plain) if record is None]
    valid: list[tuple[int, IngestRecord]] = [(i, r) for i, r in enumerate(plain) if r is not None]
    if not rest:
        return valid, []
    judged, rejected = schemas.validate_records([items[index] for index in rest])
    valid.extend((rest[position], record) for position, record in judged)
    valid.sort(key=lambda pair: pair[0])
    return valid, [{**rejection, "index": rest[rejection["index"]]} for rejection in rejected]
