"""Classify a failed call into one error cause (the causes the Errors page lists), with a remedy
for each, and the upstream's error message as the dashboard keeps it (capped, secrets and
prompt text out).

`REMEDIES` is the one home of the remedies: the Errors page and a request's page both read it
through `remedy()`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

from toki_dashboard.redaction import REDACTED, redact
from usage.models import ErrorCause

QUOTA_WORDS = re.compile(r"quota|insufficient|balance|credit|billing|余额|额度", re.IGNORECASE)
DISABLED_WORDS = re.compile(r"disabled|deactivated|revoked|suspended|banned|已禁用|已被禁用", re.IGNORECASE)
INVALID_KEY_WORDS = re.compile(r"invalid[_ ]api[_ ]key|incorrect api key|invalid token|无效的令牌", re.IGNORECASE)
MODEL_WORDS = re.compile(
    r"model[_ ]not[_ ]found|does not exist|no available channel|not available|unavailable|模型.*不存在|无可用渠道",
    re.IGNORECASE,
)
PARAMETER_WORDS = re.compile(r"unsupported|unrecognized|not supported|invalid[_ ]parameter|param", re.IGNORECASE)
TIMEOUT_WORDS = re.compile(r"timed? ?out|timeout", re.IGNORECASE)

REMEDIES: dict[str, str | Promise] = {
    ErrorCause.INVALID_API_KEY: gettext_lazy(
        "Check the key the application sends; rotate it in the TOKI console if it leaked."
    ),
    ErrorCause.KEY_DISABLED: gettext_lazy(
        "Re-enable the key in the TOKI console, or switch the application to an active key."
    ),
    ErrorCause.INSUFFICIENT_QUOTA: gettext_lazy(
        "Buy a Token Plan or top up the wallet; set an alert so this is seen earlier."
    ),
    ErrorCause.MODEL_UNAVAILABLE: gettext_lazy(
        "Use a model your plan covers and TOKI serves; check the spelling of the model name."
    ),
    ErrorCause.UNSUPPORTED_PARAMETER: gettext_lazy(
        "Remove or rename the parameter the model rejects: the error message on the request's page names it, "
        "and the Errors page lists the parameters its failures had in common."
    ),
    ErrorCause.RATE_LIMITED: gettext_lazy(
        "Retry with exponential backoff, spread traffic over time or ask TOKI for a higher limit."
    ),
    ErrorCause.UPSTREAM_ERROR: gettext_lazy(
        "TOKI or the model provider failed; retry later and check TOKI's status page."
    ),
    ErrorCause.TIMEOUT: gettext_lazy("Raise the client timeout, stream long answers, or shorten the prompt."),
    ErrorCause.CLIENT_CANCELLED: gettext_lazy(
        "The caller closed the connection; check client timeouts and user cancellations."
    ),
    ErrorCause.OTHER: gettext_lazy(
        "Open one of the requests: its page shows the upstream's error type, code and message."
    ),
}

# The longest error message kept (characters); longer ones are cut and end with an ellipsis.
MAX_ERROR_MESSAGE = 500
# A passage of the request's own text at least this long is taken out of a message.
PROMPT_ECHO_CHARS = 16
PROMPT_REMOVED = "[prompt text removed]"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SPACES = re.compile(r"\s+")


def remedy(cause: str) -> str:
    """What to do about a failure of this cause ("" for a success), in the active language."""
    return str(REMEDIES.get(cause, ""))


def _without_echo(message: str, texts: Iterable[str]) -> str:
    """`message` without the passages (PROMPT_ECHO_CHARS or longer) it repeats from `texts`.

    Windows of the message, every half window, are looked up in the texts (C-speed
    substring search), so any repeated passage of 1.5 windows or more is found; each hit is
    grown to the longest passage found in the same text."""
    texts = [text for text in texts if len(text) >= PROMPT_ECHO_CHARS]
    if not texts or len(message) < PROMPT_ECHO_CHARS:
        return message
    size, step = PROMPT_ECHO_CHARS, PROMPT_ECHO_CHARS // 2
    spans: list[tuple[int, int]] = []
    start = 0
    while start + size <= len(message):
        window = message[start : start + size]
        source = next((text for text in texts if window in text), None)
        if source is None:
            start += step
            continue
        begin = start
        while begin > 0 and message[begin - 1 : start + size] in source:
            begin -= 1
        end = start + size
        while end < len(message) and message[begin : end + 1] in source:
            end += 1
        spans.append((begin, end))
        start = end
    if not spans:
        return message
    pieces, last = [], 0
    for begin, end in spans:
        if begin < last:  # grown back over the previous span
            begin = last
        pieces.append(message[last:begin])
        pieces.append(PROMPT_REMOVED)
        last = end
    pieces.append(message[last:])
    return "".join(pieces)


def shown_message(message: str | None, *, request_texts: Iterable[str] = ()) -> str:
    """The error message as stored and shown: passages of the request's text (when the caller
    knows it: the proxy) taken out, secrets (keys, bearer tokens, passwords, e-mail addresses)
    redacted, whitespace folded, at most MAX_ERROR_MESSAGE characters."""
    if not message:
        return ""
    text = _without_echo(message[: MAX_ERROR_MESSAGE * 8], request_texts)
    text = _EMAIL.sub(REDACTED, redact(text))
    text = _SPACES.sub(" ", text).strip()
    if len(text) > MAX_ERROR_MESSAGE:
        text = text[: MAX_ERROR_MESSAGE - 1].rstrip() + "…"
    return text


def classify_error(status_code: int, error_type: str = "", error_code: str = "", message: str = "") -> ErrorCause:
    """The cause of a call's failure; `none` for a success without an error body."""
    kind = f"{error_type} {error_code}".lower()
    text = f"{kind} {message}"
    if status_code < 400 and not (error_type or error_code or message):
        return ErrorCause.NONE
    if "timeout" in kind or status_code in (408, 504) or (status_code >= 500 and TIMEOUT_WORDS.search(text)):
        return ErrorCause.TIMEOUT
    if status_code == 499 or "cancel" in kind:
        return ErrorCause.CLIENT_CANCELLED
    if status_code == 402 or "insufficient_quota" in kind or (status_code in (403, 429) and QUOTA_WORDS.search(text)):
        return ErrorCause.INSUFFICIENT_QUOTA
    if DISABLED_WORDS.search(text) and status_code in (401, 403):
        return ErrorCause.KEY_DISABLED
    if status_code == 401 or INVALID_KEY_WORDS.search(text):
        return ErrorCause.INVALID_API_KEY
    if status_code == 404 or "model_not_found" in kind or (status_code in (400, 503) and MODEL_WORDS.search(text)):
        return ErrorCause.MODEL_UNAVAILABLE
    if status_code == 429 or "rate_limit" in kind:
        return ErrorCause.RATE_LIMITED
    if status_code in (400, 422) and PARAMETER_WORDS.search(text):
        return ErrorCause.UNSUPPORTED_PARAMETER
    if status_code >= 500:
        return ErrorCause.UPSTREAM_ERROR
    if DISABLED_WORDS.search(text):
        return ErrorCause.KEY_DISABLED
    return ErrorCause.OTHER
