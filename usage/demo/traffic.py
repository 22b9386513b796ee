"""The demo window and the records of one hour, deterministic for a seed."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from usage.demo.catalogue import (
    BACKGROUND_ERROR_RATE,
    GROWTH_OVER_WINDOW,
    HOUR,
    KEYS,
    MAX_DAYS,
    MODELS,
    PROFILE_CLASSES,
    RHYTHMS,
    TEXTS,
    KeySpec,
    ModelSpec,
    Rhythm,
    TextKind,
    parameters_for,
)
from usage.demo.failures import BACKGROUND_FAILURES, INCIDENTS, UNSUPPORTED_PARAMETER, Failure, Incident


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
        params = parameters_for(key, request_id, stream=failed.get("stream", False), rejected=rejected)
        return payload | failed | {"parameters": params}
    stream = not model.embedding and rng.random() < key.stream_share
    tokens = _tokens(rng, key, model)
    latency_ms, ttft_ms = _timing(rng, model, tokens, stream=stream)
    payload |= {"stream": stream, "latency_ms": latency_ms} | _lengths(rng, text, tokens)
    payload["parameters"] = parameters_for(key, request_id, stream=stream, rejected=False)
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
