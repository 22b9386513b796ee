"""No secret in any log: every log record of the process is redacted when it is made.

`install()` (called by the settings, which every process loads: web server, proxy,
Celery worker and scheduler, management commands) wraps the method every logger makes
its records with, so a record is redacted before any filter or handler sees it, whoever
configured the handlers: Django's LOGGING, uvicorn's own, Celery's (which replaces the
root handlers) or gunicorn's. What is redacted: the values of authorization/token/key/secret/password/
cookie headers and fields, bearer/token/basic credentials, `toki_…` API tokens,
`sk-…`-style keys, secrets in query strings (`?key=…`, `api_key=`, `token=` …) and
URL passwords, and long random-looking strings (mixed-case letters and digits). The
message, its arguments, the exception traceback and the stack are all covered.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

REDACTED = "[redacted]"

# Names whose values are secrets: authorization, api_key, X-Api-Key, client_secret, password, …
_SECRET_NAME = (
    r"[\w-]*(?:authorization|api[_-]?key|access[_-]?key|secret|password|passwd|pwd|cookie|session[_-]?id|token|key)"  # noqa: S105
)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Credentials after an auth scheme, in headers, messages and reprs.
    (re.compile(r"\b(Bearer|Basic|Digest)(\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\1\2{REDACTED}"),
    # "Token <credential>" (Django REST style), but not prose such as "Token allocation".
    (re.compile(r"\b(Token)(\s+)(?=\S*\d)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\1\2{REDACTED}"),
    # name: value / name=value / "name": "value" for secret-looking names (headers, dicts, JSON).
    (
        re.compile(
            rf"(\b{_SECRET_NAME}\b[\"']?\s*[:=]\s*[\"']?)"
            rf"(?!(?:Bearer|Basic|Digest|Token)\s|{re.escape(REDACTED)})[^\s\"',;&}}\])]+",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
    # The dashboard's own API tokens and provider keys, wherever they appear.
    # (a token is toki_ and 43 random URL-safe characters; lower-case names such as
    # toki_staging_… tables are not tokens)
    (re.compile(r"\btoki_(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{16,}"), f"toki_{REDACTED}"),
    (re.compile(r"\b(sk|tk|pk|rk|ak)-[A-Za-z0-9_-]{8,}"), rf"\1-{REDACTED}"),
    # user:password@ in URLs (database, SMTP, broker addresses).
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    # Secrets in query strings and form bodies: ?key=…, &api_key=…, ;token=…
    (
        re.compile(
            r"([?&;][^=&\s#]*(?:key|token|secret|password|passwd|pwd|sig|signature|auth|credential|session|code)"
            r"[^=&\s#]*=)[^&\s#\"']+",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
]
# Anything else that looks like a key: a long run of mixed-case letters and digits.
_KEY_LIKE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}")


def _key_like(match: re.Match[str]) -> str:
    text = match.group()
    looks_random = any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)
    return REDACTED if looks_random else text


def redact(text: str) -> str:
    """`text` with every secret-looking part replaced by [redacted]."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _KEY_LIKE.sub(_key_like, text)


_PLAIN = (int, float, bool, Decimal, type(None))
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _redacted_arg(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value  # numbers keep their type for %d and %f
    text = value if isinstance(value, str) else str(value)
    cleaned = redact(text)
    return value if cleaned == text and isinstance(value, str) else cleaned


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record in place: message, arguments, traceback and stack."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    elif record.msg is not None:
        record.msg = redact(str(record.msg))
    args = record.args
    if isinstance(args, Mapping):
        record.args = {key: _redacted_arg(value) for key, value in args.items()}
    elif args:
        # Arguments keep their places: some formatters (uvicorn's access log) unpack them.
        record.args = tuple(_redacted_arg(value) for value in args)
    try:
        message = record.getMessage()
    except Exception:  # a malformed format string: its handler reports it as it would have
        message = ""
    if message and redact(message) != message:
        # A secret formed by the message and its arguments together: keep the redacted text only.
        record.msg, record.args = redact(message), ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
        # Formatters print exc_text; no handler gets the live exception to print unredacted.
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for name in record.__dict__.keys() - _STANDARD_ATTRIBUTES:
        # Extras (Django's `request`, whose repr holds the query string): an object keeps its
        # type unless its text holds a secret, then the redacted text replaces it.
        value = record.__dict__[name]
        if not isinstance(value, _PLAIN):
            text = value if isinstance(value, str) else repr(value)
            if (cleaned := redact(text)) != text:
                record.__dict__[name] = cleaned
    return record


class RedactingFilter(logging.Filter):
    """The same redaction as a filter, for a handler that makes its own records."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install() -> None:
    """Redact every log record this process makes; safe to call more than once.

    The hook is Logger.makeRecord, shared by every logger: it sees a record complete with
    its `extra` attributes, and before any filter or handler does.
    """
    make_record = logging.Logger.makeRecord
    if getattr(make_record, "redacts", False):
        return

    def redacting_make_record(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(make_record(self, *args, **kwargs))

    redacting_make_record.redacts = True  # type: ignore[attr-defined]  # marks the patch as installed once
    logging.Logger.makeRecord = redacting_make_record  # type: ignore[method-assign]  # redaction patches the logging module on purpose
