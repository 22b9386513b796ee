"""The optional request parameters a call used, by name only (never their values).

A record keeps them as a bit mask (`UsageRecord.request_params`): bit i is `KNOWN[i]`, and
`other` stands for every name outside the list. The order of `KNOWN` is stored in every
record's mask, so names are only ever appended, never moved or removed.

Capabilities are what the model catalogue shows a model doing in successful calls:
streaming, tools and JSON mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

KNOWN: tuple[str, ...] = (
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "response_format",
    "logprobs",
    "top_logprobs",
    "n",
    "seed",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "stop",
    "user",
    "reasoning_effort",
    "reasoning",
    "modalities",
    "audio",
    "prediction",
    "service_tier",
    "store",
    "metadata",
    "web_search_options",
    "text",
    "truncation",
    "include",
    "previous_response_id",
    "instructions",
    "dimensions",
    "encoding_format",
    "suffix",
    "echo",
    "best_of",
    "top_k",
    "repetition_penalty",
    "enable_thinking",
    "thinking",
)
OTHER = "other"
NAMES: tuple[str, ...] = (*KNOWN, OTHER)
BIT: dict[str, int] = {name: 1 << index for index, name in enumerate(NAMES)}
# What every call of its kind carries: not an option, so not recorded.
REQUIRED = frozenset({"model", "messages", "prompt", "input"})
MAX_NAMES = 64


class Capability:
    STREAMING = "streaming"
    TOOLS = "tools"
    JSON_MODE = "json_mode"


# A capability, the parameters that show it, and how it is called on pages.
CAPABILITIES: dict[str, tuple[frozenset[str], str | Promise]] = {
    Capability.STREAMING: (frozenset({"stream"}), gettext_lazy("Streaming")),
    Capability.TOOLS: (frozenset({"tools", "functions"}), gettext_lazy("Tools")),
    Capability.JSON_MODE: (frozenset({"response_format"}), gettext_lazy("JSON mode")),
}


def _used(value: Any) -> bool:
    """A parameter counts when it asks for something: not null, false, or empty."""
    return value is not None and value is not False and value != [] and value != {} and value != ""


def names_used(body: Mapping[str, Any]) -> list[str]:
    """The optional parameters of a request body, by name; unknown ones as `other`."""
    names = {name if name in BIT else OTHER for name, value in body.items() if name not in REQUIRED and _used(value)}
    return [name for name in NAMES if name in names]


def mask_of(names: Iterable[str]) -> int:
    mask = 0
    for name in names:
        mask |= BIT.get(name, BIT[OTHER])
    return mask


@lru_cache(maxsize=4096)
def names_in(mask: int) -> tuple[str, ...]:
    """The names a mask holds, in the list's order (masks repeat: cached)."""
    return tuple(name for name in NAMES if mask & BIT[name])


def names_of(mask: int) -> list[str]:
    return list(names_in(mask))
