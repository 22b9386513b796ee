"""What the demo is made of: its models, texts, traffic rhythms and keys."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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


def parameters_for(key: KeySpec, request_id: str, *, stream: bool, rejected: bool) -> list[str]:
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
