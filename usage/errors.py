"""Classify a failed call into one error cause (the causes the Errors page lists), with a remedy for each."""

from __future__ import annotations

import re

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

REMEDIES: dict[str, str] = {
    ErrorCause.INVALID_API_KEY: "Check the key the application sends; rotate it in the TOKI console if it leaked.",
    ErrorCause.KEY_DISABLED: "Re-enable the key in the TOKI console, or switch the application to an active key.",
    ErrorCause.INSUFFICIENT_QUOTA: "Buy a Token Plan or top up the wallet; set an alert so this is seen earlier.",
    ErrorCause.MODEL_UNAVAILABLE: "Use a model your plan covers and TOKI serves; check the spelling of the model name.",
    ErrorCause.UNSUPPORTED_PARAMETER: "Remove or rename the parameter the model rejects (see the error message).",
    ErrorCause.RATE_LIMITED: "Retry with exponential backoff, spread traffic over time or ask TOKI for a higher limit.",
    ErrorCause.UPSTREAM_ERROR: "TOKI or the model provider failed; retry later and check TOKI's status page.",
    ErrorCause.TIMEOUT: "Raise the client timeout, stream long answers, or shorten the prompt.",
    ErrorCause.CLIENT_CANCELLED: "The caller closed the connection; check client timeouts and user cancellations.",
    ErrorCause.OTHER: "Read the error message of a sample request below.",
}


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
