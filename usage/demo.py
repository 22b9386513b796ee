"""The usage half of the demo data set (`manage.py seed_demo`, README "Two commands").

Demo users, the "Acme AI" account, a price book, a dozen keys in four teams, and
N days of requests sent through `record_usage`, so rollups are kept by the real
ingestion path.

Deterministic: an hour's requests come from an RNG seeded with (seed, hour), and
growth and incidents are placed relative to the window, so the same seed and the
same `until` give exactly the same records.
Idempotent: request ids are derived from seed and hour; hours that already hold
this seed's records are not generated again; each batch holds whole hours (one
transaction), so a run that stopped half-way resumes where it stopped, and a run
a few hours later only adds those hours.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from toki_dashboard.roles import Role
from usage.ingestion import name_fingerprint
from usage.models import Account, ApiKey, ModelPrice, PriceSource, Provider, RecordSource, UsageRecord
from usage.repricing import Scope, schedule
from usage.schemas import RecordIn
from usage.services import IngestResult, add_member, create_account, record_usage

DEMO_PASSWORD = "toki-demo"  # noqa: S105 - the documented demo login, demo data only
ACCOUNT_NAME, ACCOUNT_SLUG = "Acme AI", "acme"
PRICES_EFFECTIVE_FROM = datetime(2024, 1, 1, tzinfo=UTC)
MAX_DAYS = 365
GROWTH_OVER_WINDOW = 0.3  # the last hour is 30% busier than the first
BACKGROUND_ERROR_RATE = 0.012
HOUR = timedelta(hours=1)


# --- Catalogue: models, texts, traffic rhythms, keys ----------------------------


@dataclass(frozen=True)
class ModelSpec:
    name: str
    ttft_ms: int  # median time to first token of a short prompt
    tokens_per_s: float  # decoding speed
    price: tuple[str, str | None, str] | None  # per 1M tokens: input, cached input, output; None = unpriced
    reasoning: bool = False
    embedding: bool = False

    @property
    def caches_prompts(self) -> bool:
        return self.price is not None and self.price[1] is not None


MODELS = {
    m.name: m
    for m in (
        ModelSpec("gpt-4o", 450, 80, ("2.50", "1.25", "10.00")),
        ModelSpec("gpt-4o-mini", 300, 120, ("0.15", "0.075", "0.60")),
        ModelSpec("claude-sonnet-4", 900, 65, ("3.00", "0.30", "15.00")),
        ModelSpec("deepseek-chat", 700, 45, ("0.27", "0.07", "1.10")),
        ModelSpec("deepseek-reasoner", 1100, 40, ("0.55", "0.14", "2.19"), reasoning=True),
        ModelSpec("qwen-max", 800, 40, ("1.60", None, "6.40")),
        ModelSpec("text-embedding-3-small", 60, 0, ("0.02", None, "0"), embedding=True),
        # Being trialled and in no price book (genai-prices has no Doubao either): the "unpriced" warning.
        ModelSpec("doubao-1.5-pro-32k", 650, 55, None),
    )
}


@dataclass(frozen=True)
class TextKind:
    """What a text is made of: characters per token and the share of each character class (§5)."""

    chars_per_token: float
    shares: dict[str, float]  # the first class is the largest and takes the rounding remainder


TEXTS = {
    "prose": TextKind(4.3, {"letters": 0.79, "spaces": 0.16, "punct": 0.04, "digits": 0.01}),
    "code": TextKind(3.3, {"letters": 0.52, "spaces": 0.25, "punct": 0.18, "digits": 0.05}),
    "json": TextKind(2.9, {"letters": 0.42, "punct": 0.33, "digits": 0.15, "spaces": 0.10}),
    "chinese": TextKind(
        1.2, {"cjk": 0.78, "letters": 0.08, "digits": 0.04, "spaces": 0.03, "punct": 0.04, "other": 0.03}
    ),
}
PROFILE_CLASSES = ("cjk", "letters", "digits", "spaces", "punct", "other")


@dataclass(frozen=True)
class Rhythm:
    """Share of the peak hour's traffic in each UTC hour of a weekday, and on weekends."""

    hourly: tuple[float, ...]
    weekend: float


RHYTHMS = {
    # People at work: busy 9-17 with a lunch dip, quiet at night and on weekends.
    "office": Rhythm(
        (0.04, 0.03, 0.03, 0.03, 0.03, 0.04, 0.08, 0.25, 0.6, 0.95, 1.0, 1.0)
        + (0.7, 0.9, 1.0, 1.0, 0.95, 0.75, 0.45, 0.3, 0.2, 0.15, 0.1, 0.06),
        weekend=0.2,
    ),
    # Customers of a product: a long day, some traffic at night, less on weekends.
    "customers": Rhythm(
        (0.2, 0.15, 0.12, 0.1, 0.1, 0.12, 0.2, 0.4, 0.65, 0.85, 1.0, 1.0)
        + (0.9, 0.95, 1.0, 0.95, 0.9, 0.8, 0.7, 0.65, 0.6, 0.5, 0.4, 0.3),
        weekend=0.45,
    ),
    # Batch jobs between 01:00 and 05:00, smaller runs on weekends.
    "nightly": Rhythm((0.02, 1.0, 1.0, 1.0, 0.8, 0.1) + (0.02,) * 18, weekend=0.5),
}


@dataclass(frozen=True)
class KeySpec:
    name: str
    team: str
    features: tuple[str, ...]
    rhythm: str
    peak_per_hour: float  # requests in the busiest hour of a weekday, before growth
    models: dict[str, float]  # model -> weight
    texts: dict[str, float]  # text kind -> weight
    prompt_tokens: int  # median prompt of a first message
    tokens_per_message: int  # conversation history added by each earlier message
    max_messages: int
    completion_tokens: int  # median visible answer
    stream_share: float = 0.0
    usage_missing_share: float = 0.0  # share of streams whose client does not ask for usage: estimated
    cache_share: float = 0.0  # share of long prompts that hit the prompt cache
    endpoint: str = "/v1/chat/completions"


KEYS = (
    KeySpec(
        "search-prod", "search", ("answer-synthesis", "query-rewrite"), "customers", 19,
        {"gpt-4o-mini": 6, "gpt-4o": 2.5, "deepseek-chat": 1.5}, {"prose": 7, "chinese": 2, "json": 1},
        2400, 0, 1, 220, stream_share=0.5, cache_share=0.5,
    ),
    KeySpec(
        "search-rerank", "search", ("rerank",), "customers", 11,
        {"gpt-4o-mini": 1}, {"prose": 8, "chinese": 2}, 1800, 0, 1, 12, cache_share=0.3,
    ),
    KeySpec(
        "search-staging", "search", ("answer-synthesis",), "office", 2,
        {"gpt-4o": 1, "claude-sonnet-4": 1}, {"prose": 1}, 2400, 0, 1, 250, stream_share=0.5,
    ),
    KeySpec(
        "support-bot-prod", "support-bot", ("chat-widget", "email-reply"), "customers", 15,
        {"claude-sonnet-4": 5, "deepseek-chat": 3, "qwen-max": 2}, {"prose": 11, "chinese": 9},
        700, 160, 24, 170, stream_share=0.85, usage_missing_share=0.45, cache_share=0.4,
    ),
    KeySpec(
        "support-bot-eval", "support-bot", ("grading",), "nightly", 11,
        {"deepseek-reasoner": 1, "gpt-4o": 1}, {"prose": 6, "chinese": 4}, 3000, 0, 1, 120,
    ),
    KeySpec(
        "support-summaries", "support-bot", ("ticket-summary",), "customers", 4,
        {"gpt-4o-mini": 7, "doubao-1.5-pro-32k": 3}, {"prose": 6, "chinese": 4}, 4000, 0, 1, 150, cache_share=0.2,
    ),
    KeySpec(
        "etl-enrichment", "data-platform", ("entity-extraction",), "nightly", 27,
        {"deepseek-chat": 7, "gpt-4o-mini": 3}, {"json": 8, "prose": 2}, 1500, 0, 1, 350, cache_share=0.7,
    ),
    KeySpec(
        "embeddings-indexer", "data-platform", ("document-index",), "nightly", 16,
        {"text-embedding-3-small": 1}, {"prose": 6, "chinese": 2, "code": 2}, 700, 0, 1, 0,
        endpoint="/v1/embeddings",
    ),
    KeySpec(
        "analytics-notebooks", "data-platform", ("sql-assistant", "notebook-chat"), "office", 3.5,
        {"deepseek-reasoner": 4, "claude-sonnet-4": 3, "gpt-4o": 3}, {"code": 5, "json": 2, "prose": 3},
        1200, 400, 12, 450, stream_share=0.7, usage_missing_share=0.3, cache_share=0.5,
    ),
    KeySpec(
        "growth-emails", "growth", ("campaign-copy",), "office", 4,
        {"gpt-4o": 6, "qwen-max": 4}, {"prose": 9, "chinese": 1}, 900, 0, 1, 600,
    ),
    KeySpec(
        "growth-experiments", "growth", ("ab-variants", "landing-copy"), "office", 3.5,
        {"gpt-4o": 5, "claude-sonnet-4": 3, "doubao-1.5-pro-32k": 2}, {"prose": 1}, 1100, 250, 6, 400,
        stream_share=0.4, endpoint="/v1/responses",
    ),
    KeySpec(
        "growth-seo", "growth", ("seo-articles",), "office", 2.5,
        {"deepseek-chat": 6, "qwen-max": 4}, {"prose": 7, "chinese": 3}, 800, 0, 1, 1400, stream_share=0.3,
    ),
)  # fmt: skip


# The optional request parameters (names only) each key's calls send, with how often; the
# proxy records them so, and the Errors page and the model catalogue read them.
# `stream_options` goes with streams only; `stream` is sent by every stream.
PARAMETERS: dict[str, tuple[tuple[str, float], ...]] = {
    "search-prod": (("temperature", 0.9), ("max_tokens", 0.6), ("stream_options", 0.8)),
    "search-rerank": (("temperature", 1.0), ("logit_bias", 0.3), ("max_tokens", 1.0)),
    "search-staging": (("temperature", 0.5),),
    "support-bot-prod": (
        ("tools", 0.7), ("tool_choice", 0.3), ("parallel_tool_calls", 0.2), ("temperature", 0.8),
        ("stream_options", 0.9), ("user", 0.5),
    ),
    "support-bot-eval": (("seed", 1.0), ("temperature", 1.0), ("response_format", 0.5)),
    "support-summaries": (("response_format", 0.6), ("max_tokens", 0.8)),
    "etl-enrichment": (("response_format", 0.95), ("seed", 0.5), ("temperature", 0.7)),
    "embeddings-indexer": (("dimensions", 0.5), ("encoding_format", 0.8)),
    "analytics-notebooks": (
        ("tools", 0.5), ("response_format", 0.3), ("reasoning_effort", 0.2), ("stream_options", 0.5),
    ),
    "growth-emails": (("temperature", 1.0), ("n", 0.3), ("presence_penalty", 0.4)),
    "growth-experiments": (("instructions", 0.8), ("text", 0.4), ("max_output_tokens", 0.6), ("temperature", 0.5)),
    "growth-seo": (("temperature", 0.9), ("frequency_penalty", 0.4), ("max_tokens", 0.7)),
}  # fmt: skip
# What an unsupported-parameter failure adds to the key's usual parameters.
REJECTED_PARAMETERS = ("logprobs", "top_logprobs")


def _parameters(key: KeySpec, request_id: str, *, stream: bool, rejected: bool) -> list[str]:
    """The optional parameters of one call, drawn from a generator of their own so that adding
    them changed none of the demo's other figures."""
    rng = random.Random(f"toki-demo/parameters/{request_id}")
    names = {
        name
        for name, share in PARAMETERS.get(key.name, ())
        if rng.random() < share and (stream or name != "stream_options")
    }
    if stream:
        names.add("stream")
    if rejected:
        names.update(REJECTED_PARAMETERS)
    return sorted(names)


# --- Failures: incidents placed in the window, and a low background rate ------------


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a catalogue entry
class Failure:
    """A failed call as the API answers it; `{model}` in the message is filled in."""

    status: int
    error: dict[str, str] | None
    latency_ms: tuple[int, int] = (40, 400)
    partial_output: bool = False  # a cancelled stream: lengths logged, tokens estimated


RATE_LIMITED = Failure(
    429,
    {
        "message": "Rate limit reached for {model} on requests per min (RPM): Limit 3500, Used 3500, Requested 1. "
        "Please try again in 17ms.",
        "type": "requests",
        "code": "rate_limit_exceeded",
    },
)
QUOTA_429 = Failure(
    429,
    {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "code": "insufficient_quota",
    },
)
QUOTA_402 = Failure(
    402,
    {
        "message": "Insufficient balance: the account's Token Plans are used up and the wallet is empty.",
        "type": "insufficient_quota",
        "code": "insufficient_user_quota",
    },
)
MODEL_NOT_FOUND = Failure(
    404,
    {
        "message": "The model `{model}` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "code": "model_not_found",
    },
)
KEY_DISABLED = Failure(
    401, {"message": "This API key has been disabled.", "type": "authentication_error", "code": "key_disabled"}
)
INVALID_KEY = Failure(
    401,
    {
        "message": "Incorrect API key provided: sk-****wXyZ. Check the key in the TOKI console.",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    },
)
SERVER_ERROR = Failure(
    500, {"message": "The server had an error while processing your request.", "type": "server_error"}
)
BAD_GATEWAY = Failure(502, {"message": "Bad gateway: upstream connection reset.", "type": "upstream_error"})
OVERLOADED = Failure(
    503, {"message": "The engine is currently overloaded, please try again later.", "type": "server_error"}
)
TIMED_OUT = Failure(
    504, {"message": "Upstream request timed out.", "type": "timeout", "code": "timeout"}, latency_ms=(60_000, 120_000)
)
UNSUPPORTED_PARAMETER = Failure(
    400,
    {
        "message": "Unsupported parameter: 'logprobs' is not supported with {model}.",
        "type": "invalid_request_error",
        "param": "logprobs",
        "code": "unsupported_parameter",
    },
)
CANCELLED = Failure(499, None, latency_ms=(800, 20_000), partial_output=True)

BACKGROUND_FAILURES: dict[Failure, float] = {
    RATE_LIMITED: 30,
    CANCELLED: 20,
    SERVER_ERROR: 10,
    BAD_GATEWAY: 8,
    OVERLOADED: 7,
    TIMED_OUT: 8,
    UNSUPPORTED_PARAMETER: 7,
}


@dataclass(frozen=True)
class Incident:
    name: str
    position: float  # where in the window it happens, 0 = start, 1 = end
    hour_of_day: int  # UTC hour it starts
    hours: int
    failure_share: float
    failures: tuple[Failure, ...]
    keys: frozenset[str] = frozenset()  # empty = every key
    models: frozenset[str] = frozenset()  # empty = every model

    def applies_to(self, key: KeySpec, model: ModelSpec) -> bool:
        return (not self.keys or key.name in self.keys) and (not self.models or model.name in self.models)


INCIDENTS = (
    Incident("plans used up before the top-up", 0.3, 15, 2, 0.9, (QUOTA_429, QUOTA_402)),
    Incident("growth-seo key disabled", 0.45, 8, 5, 1.0, (KEY_DISABLED,), keys=frozenset({"growth-seo"})),
    Incident(
        "search launch hits the rate limit", 0.55, 10, 2, 0.3, (RATE_LIMITED,),
        keys=frozenset({"search-prod", "search-rerank"}),
    ),
    Incident(
        "notebooks use a rotated key", 0.62, 9, 3, 0.8, (INVALID_KEY,), keys=frozenset({"analytics-notebooks"})
    ),
    Incident(
        "qwen-max missing from the channel", 0.75, 10, 4, 1.0, (MODEL_NOT_FOUND,),
        models=frozenset({"qwen-max"}),
    ),
    Incident(
        "claude-sonnet-4 upstream trouble", 0.9, 11, 1, 0.35, (SERVER_ERROR, BAD_GATEWAY, OVERLOADED),
        models=frozenset({"claude-sonnet-4"}),
    ),
)  # fmt: skip


# --- The window and the records of one hour ---------------------------------------


def current_hour() -> datetime:
    """The default end of the window: now, rounded down to the hour, so every generated hour is complete."""
    return timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class DemoWindow:
    seed: int
    start: datetime
    until: datetime
    incidents: tuple[tuple[Incident, datetime, datetime], ...] = field(default=())

    @classmethod
    def ending(cls, until: datetime, *, days: int, seed: int) -> DemoWindow:
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"days must be between 1 and {MAX_DAYS}")
        until = until.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        start = until - timedelta(days=days)
        placed = tuple((i, *_place(i, start, until)) for i in INCIDENTS)
        return cls(seed=seed, start=start, until=until, incidents=placed)

    def hours(self) -> Iterator[datetime]:
        hour = self.start
        while hour < self.until:
            yield hour
            hour += HOUR

    def growth(self, hour: datetime) -> float:
        return 1 + GROWTH_OVER_WINDOW * ((hour - self.start) / (self.until - self.start))

    def request_prefix(self) -> str:
        return f"demo-{self.seed}-"


def _place(incident: Incident, start: datetime, until: datetime) -> tuple[datetime, datetime]:
    """At its hour of day, on the weekday nearest its position that keeps it inside the window."""
    near = start + (until - start) * incident.position
    near = near.replace(hour=incident.hour_of_day, minute=0, second=0, microsecond=0)
    length = incident.hours * HOUR
    fitting = [
        begin
        for begin in (near + timedelta(days=shift) for shift in (0, -1, 1, -2, 2, -3, 3))
        if start <= begin and begin + length <= until
    ]
    begin = next((b for b in fitting if b.weekday() < 5), fitting[0] if fitting else start)
    return begin, begin + length


def records_for_hour(window: DemoWindow, hour: datetime) -> list[dict[str, Any]]:
    """The hour's requests as ingestion payloads (§4.3), oldest first."""
    rng = random.Random(f"toki-demo/{window.seed}/{hour:%Y%m%d%H}")
    busy = window.growth(hour) * _day_mood(window.seed, hour)
    arrivals: list[tuple[datetime, KeySpec]] = []
    for key in KEYS:
        for _ in range(_count(rng, key.peak_per_hour * _activity(RHYTHMS[key.rhythm], hour) * busy)):
            arrivals.append((hour + timedelta(milliseconds=rng.randrange(3_600_000)), key))
    arrivals.sort(key=lambda a: (a[0], a[1].name))
    return [
        _request(rng, window, key, at, f"{window.request_prefix()}{hour:%Y%m%d%H}-{n:04d}")
        for n, (at, key) in enumerate(arrivals)
    ]


def records_in_window(window: DemoWindow) -> Iterator[dict[str, Any]]:
    for hour in window.hours():
        yield from records_for_hour(window, hour)


def _day_mood(seed: int, hour: datetime) -> float:
    """Days differ a little from one another, the same way for every hour of the day."""
    return random.Random(f"toki-demo/{seed}/{hour:%Y%m%d}").lognormvariate(0, 0.1)


def _activity(rhythm: Rhythm, hour: datetime) -> float:
    return rhythm.hourly[hour.hour] * (rhythm.weekend if hour.weekday() >= 5 else 1.0)


def _count(rng: random.Random, expected: float) -> int:
    """A noisy whole number of requests around `expected`."""
    noisy = expected * rng.lognormvariate(0, 0.2)
    whole = math.floor(noisy)
    return whole + (rng.random() < noisy - whole)


def _pick(rng: random.Random, weights: dict[Any, float]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _request(rng: random.Random, window: DemoWindow, key: KeySpec, at: datetime, request_id: str) -> dict[str, Any]:
    model = MODELS[_pick(rng, key.models)]
    payload: dict[str, Any] = {
        "request_id": request_id,
        "occurred_at": at,
        "model": model.name,
        "api_key": f"name:{key.name}",
        "endpoint": key.endpoint,
        "metadata": {"team": key.team, "feature": rng.choice(key.features)},
    }
    text = TEXTS[_pick(rng, key.texts)]
    failure = _failure(rng, window, key, model, at)
    if failure is not None:
        failed = _failed(rng, failure, key, model, text)
        rejected = failure is UNSUPPORTED_PARAMETER
        params = _parameters(key, request_id, stream=failed.get("stream", False), rejected=rejected)
        return payload | failed | {"parameters": params}
    stream = not model.embedding and rng.random() < key.stream_share
    tokens = _tokens(rng, key, model)
    latency_ms, ttft_ms = _timing(rng, model, tokens, stream=stream)
    payload |= {"stream": stream, "latency_ms": latency_ms} | _lengths(rng, text, tokens)
    payload["parameters"] = _parameters(key, request_id, stream=stream, rejected=False)
    if ttft_ms is not None:
        payload["ttft_ms"] = ttft_ms
    if not (stream and rng.random() < key.usage_missing_share):
        payload["usage"] = _usage(tokens, key.endpoint)
    return payload


def _failure(rng: random.Random, window: DemoWindow, key: KeySpec, model: ModelSpec, at: datetime) -> Failure | None:
    for incident, begin, end in window.incidents:
        if begin <= at < end and incident.applies_to(key, model) and rng.random() < incident.failure_share:
            return rng.choice(incident.failures)
    if rng.random() < BACKGROUND_ERROR_RATE:
        return _pick(rng, BACKGROUND_FAILURES)
    return None


def _failed(rng: random.Random, failure: Failure, key: KeySpec, model: ModelSpec, text: TextKind) -> dict[str, Any]:
    """A failed call: status, error body and latency; a cancelled stream also logs what it received."""
    fields: dict[str, Any] = {"status_code": failure.status, "latency_ms": rng.randint(*failure.latency_ms)}
    if failure.error is not None:
        fields["error"] = {name: value.format(model=model.name) for name, value in failure.error.items()}
    if failure.partial_output and not model.embedding:
        tokens = _tokens(rng, key, model)
        received = tokens.visible_completion * rng.uniform(0.05, 0.6)
        partial = Tokens(tokens.prompt, int(received) + 1, 0, 0, tokens.messages)
        fields |= {"stream": True} | _lengths(rng, text, partial)
    return fields


@dataclass(frozen=True)
class Tokens:
    prompt: int
    completion: int  # includes reasoning, as OpenAI counts it
    cached: int
    reasoning: int
    messages: int

    @property
    def visible_completion(self) -> int:
        return self.completion - self.reasoning


def _tokens(rng: random.Random, key: KeySpec, model: ModelSpec) -> Tokens:
    """Prompt grows with the conversation; reasoning models think before they answer."""
    messages = min(rng.randint(1, key.max_messages), rng.randint(1, key.max_messages))  # short chats are common
    prompt = int(key.prompt_tokens * rng.lognormvariate(0, 0.5)) + key.tokens_per_message * (messages - 1)
    prompt = min(max(prompt, 8), 120_000)
    completion = 0 if model.embedding else max(1, int(key.completion_tokens * rng.lognormvariate(0, 0.6)))
    reasoning = int(completion * rng.uniform(1, 4)) if model.reasoning else 0
    cached = 0
    if model.caches_prompts and prompt >= 1024 and rng.random() < key.cache_share:
        cached = int(prompt * rng.uniform(0.4, 0.95)) // 128 * 128
    return Tokens(prompt, completion + reasoning, cached, reasoning, messages)


def _usage(tokens: Tokens, endpoint: str) -> dict[str, Any]:
    """The usage object in the shape the endpoint answers with."""
    total = tokens.prompt + tokens.completion
    if endpoint == "/v1/embeddings":
        return {"prompt_tokens": tokens.prompt, "total_tokens": total}
    if endpoint == "/v1/responses":
        usage: dict[str, Any] = {"input_tokens": tokens.prompt, "output_tokens": tokens.completion}
        usage |= {"total_tokens": total, "input_tokens_details": {"cached_tokens": tokens.cached}}
        return usage | {"output_tokens_details": {"reasoning_tokens": tokens.reasoning}}
    usage = {"prompt_tokens": tokens.prompt, "completion_tokens": tokens.completion, "total_tokens": total}
    if tokens.cached:
        usage["prompt_tokens_details"] = {"cached_tokens": tokens.cached}
    if tokens.reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": tokens.reasoning}
    return usage


def _lengths(rng: random.Random, text: TextKind, tokens: Tokens) -> dict[str, Any]:
    """What the proxy logs about the texts: lengths and character-class profiles, never the text."""
    overhead = 3 * tokens.messages + 3
    context_chars = max(1, round((tokens.prompt - overhead) * text.chars_per_token * rng.uniform(0.9, 1.1)))
    context = _profile(rng, text, context_chars)
    lengths: dict[str, Any] = {
        "context_chars": context_chars,
        "context_bytes": _utf8_bytes(context),
        "context_profile": context,
        "message_count": tokens.messages,
    }
    if tokens.completion:
        output_chars = round(tokens.visible_completion * text.chars_per_token * rng.uniform(0.9, 1.1))
        output = _profile(rng, text, output_chars)
        lengths |= {"output_chars": output_chars, "output_bytes": _utf8_bytes(output), "output_profile": output}
    return lengths


def _profile(rng: random.Random, text: TextKind, chars: int) -> dict[str, int]:
    """Six class counts that sum to `chars`; the largest class takes the remainder."""
    counts = dict.fromkeys(PROFILE_CLASSES, 0)
    main, *others = text.shares
    for name in others:
        counts[name] = int(chars * text.shares[name] * rng.uniform(0.85, 1.15))
    counts[main] = chars - sum(counts.values())
    return counts


def _utf8_bytes(profile: dict[str, int]) -> int:
    ascii_chars = profile["letters"] + profile["digits"] + profile["spaces"] + profile["punct"]
    return 3 * profile["cjk"] + 2 * profile["other"] + ascii_chars


def _timing(rng: random.Random, model: ModelSpec, tokens: Tokens, *, stream: bool) -> tuple[int, int | None]:
    """(latency, time to first token): prefill grows with the prompt, decoding with the answer."""
    if model.embedding:
        return int((model.ttft_ms + tokens.prompt * 0.02) * rng.lognormvariate(0, 0.25)), None
    speed = model.tokens_per_s * rng.lognormvariate(0, 0.2)
    thinking_ms = tokens.reasoning / speed * 1000
    ttft = model.ttft_ms * rng.lognormvariate(0, 0.3) + tokens.prompt * 0.015 + thinking_ms
    latency = ttft + tokens.visible_completion / speed * 1000
    return int(latency), (int(ttft) if stream else None)


# --- Writing it: users, account, prices, keys, records ----------------------------


@dataclass
class DemoReport:
    account: Account
    window: DemoWindow
    users_created: int = 0
    prices_created: int = 0
    hours_generated: int = 0
    hours_skipped: int = 0
    ingested: IngestResult = field(default_factory=IngestResult)


def ensure_users(account: Account) -> int:
    """admin, finance and engineer in their role groups, members of the demo account; passwords
    are set only when a user is created."""
    created = 0
    for role in Role:
        is_admin = role is Role.ADMIN
        user, was_created = get_user_model().objects.get_or_create(
            username=role.value,
            defaults={"email": f"{role.value}@acme.example", "is_staff": is_admin, "is_superuser": is_admin},
        )
        if was_created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
            created += 1
        add_member(account=account, user=user, role=role)
    return created


def ensure_account() -> Account:
    return Account.objects.filter(slug=ACCOUNT_SLUG).first() or create_account(
        name=ACCOUNT_NAME, slug=ACCOUNT_SLUG, currency="USD", provider=Provider.MANUAL
    )


def ensure_prices() -> int:
    """Shared manual prices for every priced demo model; returns how many were created."""
    ours = ModelPrice.objects.filter(
        account=None, currency="USD", source=PriceSource.MANUAL, effective_from=PRICES_EFFECTIVE_FROM
    )
    present = set(ours.filter(model_pattern__in=MODELS).values_list("model_pattern", flat=True))
    missing = [_price_row(m.name, m.price) for m in MODELS.values() if m.price is not None and m.name not in present]
    with transaction.atomic():
        ModelPrice.objects.bulk_create(missing)
        # bulk_create sends no post_save: reprice here, and only when records could change cost.
        if UsageRecord.objects.filter(model__in=[p.model_pattern for p in missing]).exists():
            schedule(Scope.of(p) for p in missing)
    return len(missing)


def _price_row(model: str, rates: tuple[str, str | None, str]) -> ModelPrice:
    input_rate, cached_rate, output_rate = rates
    return ModelPrice(
        account=None,
        model_pattern=model,
        input_per_mtok=Decimal(input_rate),
        cached_input_per_mtok=Decimal(cached_rate) if cached_rate is not None else None,
        output_per_mtok=Decimal(output_rate),
        currency="USD",
        effective_from=PRICES_EFFECTIVE_FROM,
        source=PriceSource.MANUAL,
    )


def label_key_teams(account: Account) -> None:
    for key in KEYS:
        fingerprint = name_fingerprint(key.name)
        ApiKey.objects.filter(account=account, fingerprint=fingerprint).exclude(team=key.team).update(team=key.team)


def seeded_hours(account: Account, window: DemoWindow) -> set[datetime]:
    """Hours of the window that already hold this seed's demo records."""
    return set(
        UsageRecord.objects.filter(
            account=account,
            source=RecordSource.DEMO,
            request_id__startswith=window.request_prefix(),
            occurred_at__gte=window.start,
            occurred_at__lt=window.until,
        ).datetimes("occurred_at", "hour", tzinfo=UTC)
    )


def ingest_window(account: Account, window: DemoWindow, report: DemoReport, *, batch_size: int = 2000) -> None:
    """Send the hours not yet seeded through `record_usage`, whole hours per batch."""
    done = seeded_hours(account, window)
    batch: list[tuple[int, RecordIn]] = []
    for hour in window.hours():
        if hour in done:
            report.hours_skipped += 1
            continue
        report.hours_generated += 1
        payloads = records_for_hour(window, hour)
        batch.extend(enumerate((RecordIn.model_validate(p) for p in payloads), start=len(batch)))
        if len(batch) >= batch_size:
            report.ingested.merge(record_usage(account, batch, source=RecordSource.DEMO))
            batch = []
    if batch:
        report.ingested.merge(record_usage(account, batch, source=RecordSource.DEMO))


def seed_demo_usage(*, days: int = 30, seed: int = 1, until: datetime | None = None) -> DemoReport:
    """Users, account, prices, keys and `days` of usage ending at `until` (default: this hour)."""
    if until is not None and until > timezone.now():
        raise ValueError("the demo data cannot end in the future")
    window = DemoWindow.ending(until or current_hour(), days=days, seed=seed)
    account = ensure_account()
    report = DemoReport(
        account=account, window=window, users_created=ensure_users(account), prices_created=ensure_prices()
    )
    ingest_window(account, window, report)
    label_key_teams(account)
    return report
