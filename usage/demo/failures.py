"""The demo's failures: incidents placed in the window, and a low background rate."""

from __future__ import annotations

from dataclasses import dataclass

from usage.demo.catalogue import KeySpec, ModelSpec


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
