"""The ingestion record (docs/api.md, Ingestion record), validated the same way on every path.

Strict types: a string where a number belongs is a rejection, not a guess.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Protocol

from django.utils import timezone
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_TOKENS = 10**9
MAX_LENGTH = 2_000_000_000  # fits a 32-bit column
MAX_METADATA_BYTES = 4096
MAX_TEAM_LENGTH = 100
# The bounds of a record's reported `cost`: below 10^14 (exclusive), at most 10 decimal places.
# Columns that add costs up are wider (usage.models.TOTAL_MONEY), so no sum of accepted records overflows.
MAX_RECORD_COST = Decimal(10) ** 14
COST_DECIMAL_PLACES = 10
FUTURE_TOLERANCE = timedelta(minutes=5)
# No LLM API call is older; every date computed from a record (days, weeks, periods) stays in range.
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
# `api_key: "name:backend"` declares a key's name; any other value is taken for a secret and hashed.
KEY_NAME_PREFIX = "name:"


def _storable(value: str) -> str:
    # PostgreSQL stores neither NUL nor lone surrogates (valid JSON escapes, invalid UTF-8):
    # reject them here, naming the field, rather than fail at insert time.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise ValueError("is not valid Unicode (lone surrogate)") from exc
    return value


Text = Annotated[StrictStr, AfterValidator(_storable)]

# The instants the billing API takes (plan validity, wallet entries): any offset, stored and
# returned in UTC; the dates pages and periods compute from them stay in the calendar.
EARLIEST_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(9999, 1, 1, tzinfo=UTC)  # exclusive: a year of margin for periods


def _in_utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 or 9999-12-31T23:59:59-01:00 leave the calendar in UTC
        utc = None
    if utc is None or not EARLIEST_INSTANT <= utc < LATEST_INSTANT:
        raise ValueError(f"must be from {EARLIEST_INSTANT:%Y-%m-%d} to before {LATEST_INSTANT:%Y-%m-%d} in UTC")
    return utc


UtcInstant = Annotated[AwareDatetime, AfterValidator(_in_utc)]
TokenCount = Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)]
Length = Annotated[StrictInt, Field(ge=0, le=MAX_LENGTH)]
Millis = Annotated[StrictInt, Field(ge=0, le=86_400_000)]


class Profile(BaseModel):
    """Character-class counts of a text (docs/api.md, Character-class profile)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cjk: Length = 0
    letters: Length = 0
    digits: Length = 0
    spaces: Length = 0
    punct: Length = 0
    other: Length = 0


class ErrorBody(BaseModel):
    """The OpenAI-style `error` object; extra provider fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    type: Text | None = Field(default=None, max_length=200)
    code: Text | StrictInt | None = None
    message: Text | None = Field(
        default=None,
        max_length=10_000,
        description="The provider's error message. Used to find the cause and shown on the request's page: "
        "kept to 500 characters with keys, tokens, passwords and e-mail addresses redacted. Never the prompt.",
    )


class TokenDetails(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cached_tokens: TokenCount | None = None
    reasoning_tokens: TokenCount | None = None


class _Details(Protocol):
    # Read-only members: either kind's details (pydantic model, msgspec struct) fit.
    @property
    def cached_tokens(self) -> int | None: ...
    @property
    def reasoning_tokens(self) -> int | None: ...


class _UsageFields(Protocol):
    @property
    def prompt_tokens(self) -> int | None: ...
    @property
    def completion_tokens(self) -> int | None: ...
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def prompt_tokens_details(self) -> _Details | None: ...
    @property
    def completion_tokens_details(self) -> _Details | None: ...
    @property
    def input_tokens_details(self) -> _Details | None: ...
    @property
    def output_tokens_details(self) -> _Details | None: ...


class UsageReading:
    """How a call's usage reads, Chat Completions (`prompt_tokens`…) or Responses
    (`input_tokens`…) alike: one definition for the schema's usage and usage.wire's."""

    __slots__ = ()

    @property
    def prompt(self: _UsageFields) -> int | None:
        return self.prompt_tokens if self.prompt_tokens is not None else self.input_tokens

    @property
    def completion(self: _UsageFields) -> int | None:
        return self.completion_tokens if self.completion_tokens is not None else self.output_tokens

    @property
    def cached(self: _UsageFields) -> int:
        details = self.prompt_tokens_details or self.input_tokens_details
        return (details.cached_tokens or 0) if details else 0

    @property
    def reasoning(self: _UsageFields) -> int:
        details = self.completion_tokens_details or self.output_tokens_details
        return (details.reasoning_tokens or 0) if details else 0


class UsageBody(BaseModel, UsageReading):
    """Chat Completions (`prompt_tokens`…) or Responses (`input_tokens`…) usage."""

    model_config = ConfigDict(extra="ignore")

    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    total_tokens: TokenCount | None = None
    prompt_tokens_details: TokenDetails | None = None
    completion_tokens_details: TokenDetails | None = None
    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    input_tokens_details: TokenDetails | None = None
    output_tokens_details: TokenDetails | None = None

    @model_validator(mode="after")
    def _has_counts(self) -> UsageBody:
        if self.prompt is None and self.completion is None:
            raise ValueError("needs prompt_tokens/completion_tokens or input_tokens/output_tokens")
        if self.cached > (self.prompt or 0):
            raise ValueError("cached_tokens cannot exceed the prompt tokens")
        return self


class RecordIn(BaseModel):
    """One request's usage as clients send it."""

    model_config = ConfigDict(extra="forbid")

    request_id: Text = Field(min_length=1, max_length=200)
    occurred_at: AwareDatetime
    model: Text = Field(min_length=1, max_length=200)
    api_key: Text | None = Field(default=None, min_length=1, max_length=200)
    endpoint: Text = Field(default="/v1/chat/completions", min_length=1, max_length=200)
    stream: StrictBool = False
    status_code: StrictInt = Field(default=200, ge=100, le=599)
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
    cost: Decimal | None = Field(
        default=None,
        ge=0,
        lt=MAX_RECORD_COST,
        decimal_places=COST_DECIMAL_PLACES,
        description="Provider-reported cost as a decimal string, 0 ≤ cost < 10^14 with at most "
        f"{COST_DECIMAL_PLACES} decimal places; wins over the cost computed from the price book.",
    )
    metadata: dict[Text, Text] = Field(
        default_factory=dict,
        description=f"Strings only, at most {MAX_METADATA_BYTES} bytes as JSON; team (≤ {MAX_TEAM_LENGTH} "
        "characters), user and feature are grouping dimensions.",
    )
    # The ids the provider gave the call: the response's `id`, and its request id (a header
    # such as X-Oneapi-Request-Id or x-request-id, or a console log's request_id). Another
    # source's record carrying one of them is the same call, counted once.
    response_id: Text | None = Field(
        default=None, min_length=1, max_length=200, description="The `id` of the response (chatcmpl-…)"
    )
    upstream_request_id: Text | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The provider's request id (X-Oneapi-Request-Id or x-request-id, a console log's request_id)",
    )
    # Names only, never values: which optional request parameters the call used.
    parameters: list[Annotated[Text, Field(min_length=1, max_length=64)]] | None = Field(
        default=None,
        max_length=64,
        description="Names of the optional request parameters the call used (`tools`, `response_format`, "
        "`stream_options`, `logprobs`…), never their values; names outside the known list count as `other`. "
        "Leave it out when unknown.",
    )

    @field_validator("occurred_at")
    @classmethod
    def _plausible_instant(cls, value: datetime) -> datetime:
        try:
            utc = value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is a year before the calendar starts
            raise ValueError(f"is before {EARLIEST_OCCURRED_AT:%Y-%m-%d}") from None
        if utc < EARLIEST_OCCURRED_AT:
            raise ValueError(f"is before {EARLIEST_OCCURRED_AT:%Y-%m-%d}")
        if utc > timezone.now() + FUTURE_TOLERANCE:
            raise ValueError("is more than 5 minutes in the future")
        return value

    @field_validator("api_key")
    @classmethod
    def _names_a_key(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.strip():
            raise ValueError("is blank; leave it out when the call had no key")
        if value.strip().startswith(KEY_NAME_PREFIX) and not value.strip()[len(KEY_NAME_PREFIX) :].strip():
            raise ValueError(f"has no name after {KEY_NAME_PREFIX!r}")
        return value

    @field_validator("cost", mode="before")
    @classmethod
    def _cost_is_exact(cls, value: Any) -> Any:
        # JSON numbers arrive as Decimal (usage.json_input); a float comes only from code that
        # already lost the exact value.
        if isinstance(value, bool | float):
            raise ValueError('must be a JSON number or a decimal string such as "0.0125"')
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_small(cls, value: dict[str, str]) -> dict[str, str]:
        if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_METADATA_BYTES:
            raise ValueError("is larger than 4 KB")
        if len(value.get("team", "")) > MAX_TEAM_LENGTH:
            raise ValueError(f"team is longer than {MAX_TEAM_LENGTH} characters")
        return value


def describe(errors: list[Any]) -> tuple[str, str]:
    """(first field path, every problem) of one record's validation errors, phrased for people."""
    messages = []
    for err in errors:
        loc = ".".join(str(part) for part in err["loc"]) or "record"
        messages.append(f"{loc}: {_phrase(err)}")
    return ".".join(str(part) for part in errors[0]["loc"]) or "record", "; ".join(messages)


def _phrase(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind in ("model_type", "model_attributes_type"):
        return "must be a JSON object"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


MAX_BATCH = 10_000


class IngestBatch(BaseModel):
    """The body of POST /api/v1/usage (documentation; records are validated one by one)."""

    records: list[RecordIn] = Field(min_length=1, max_length=MAX_BATCH)


_RECORDS = TypeAdapter(list[RecordIn])


def validate_records(items: list[Any]) -> tuple[list[tuple[int, RecordIn]], list[dict[str, Any]]]:
    """Valid records with their batch index, and one rejection per invalid record.

    The whole list is validated in one pass (fast, in pydantic's core); only when
    something is wrong are the valid records validated again without the bad ones.
    """
    try:
        return list(enumerate(_RECORDS.validate_python(items))), []
    except ValidationError as exc:
        errors_by_index: dict[int, list[Any]] = {}
        for err in exc.errors(include_url=False):
            index, *path = err["loc"]
            errors_by_index.setdefault(int(index), []).append({**err, "loc": tuple(path)})
    rejected = []
    for index, errors in sorted(errors_by_index.items()):
        field, message = describe(errors)
        rejected.append({"index": index, "field": field, "message": message})
    keep = [i for i in range(len(items)) if i not in errors_by_index]
    valid = _RECORDS.validate_python([items[i] for i in keep])
    return list(zip(keep, valid, strict=True)), rejected
