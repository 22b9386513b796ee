"""One GET, its failures sorted into retry, stop or error. Never puts a credential in a message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from billing.providers.errors import BadAnswer, CredentialsRejected, ProviderUnavailable
from usage.error_causes import classify_error
from usage.models import ErrorCause

MAX_MESSAGE = 300


def client() -> httpx.Client:
    timeout = float(settings.BILLING_SYNC_TIMEOUT_SECONDS)
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        headers={"User-Agent": "toki-dashboard-sync", "Accept": "application/json"},
        follow_redirects=False,
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max((parsedate_to_datetime(value) - timezone.now()).total_seconds(), 0.0)
        except (TypeError, ValueError):
            return None


def _server_message(response: httpx.Response) -> str:
    """A short reason from an error body: `message` or `error.message`, else nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else body.get("message")
        if isinstance(message, str):
            return f": {message[:MAX_MESSAGE]}"
    return ""


def get_json(
    http: httpx.Client,
    url: str,
    *,
    headers: Mapping[str, str],
    params: Mapping[str, Any] | None = None,
    exact_numbers: bool = False,
) -> Any:
    """The decoded JSON answer of GET `url`; `exact_numbers` reads decimals as Decimal."""
    where = httpx.URL(url).path
    try:
        response = http.get(url, headers=dict(headers), params=params)
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable(f"GET {where} timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise ProviderUnavailable(f"GET {where} failed: {type(exc).__name__}") from None
    status = response.status_code
    if status in (401, 403):
        raise CredentialsRejected(f"GET {where} answered HTTP {status}{_server_message(response)}")
    if status == 429 or status >= 500:
        raise ProviderUnavailable(f"GET {where} answered HTTP {status}", retry_after=_retry_after(response))
    if status != 200:
        raise BadAnswer(f"GET {where} answered HTTP {status}{_server_message(response)}")
    try:
        return json.loads(response.content, parse_float=Decimal if exact_numbers else float)
    except ValueError as exc:
        raise BadAnswer(f"GET {where} answered with invalid JSON ({exc.__class__.__name__}: truncated?)") from None


# An answer carrying one of these refuses the key itself (not the request).
REJECTED_CAUSES = {ErrorCause.INVALID_API_KEY, ErrorCause.KEY_DISABLED}


def checked(body: Any, where: str, expected_object: str) -> dict[str, Any]:
    """The answer as an object, unless it is an OpenAI-style `error` or not the object expected."""
    if not isinstance(body, dict):
        raise BadAnswer(f"{where} did not answer with a JSON object")
    error = body.get("error")
    if error not in (None, ""):
        details = error if isinstance(error, dict) else {"message": str(error)}
        error_type, code = str(details.get("type") or ""), str(details.get("code") or "")
        message = str(details.get("message") or "")[:300]
        reason = message or code or error_type or "no message"
        cause = classify_error(200, error_type, code, message)
        if cause in REJECTED_CAUSES:
            raise CredentialsRejected(f"{where} refused the key: {reason}")
        if cause == ErrorCause.RATE_LIMITED:
            raise ProviderUnavailable(f"{where} is rate limited: {reason}")
        raise BadAnswer(f"{where} answered an error: {reason}")
    if body.get("object") not in (None, expected_object):
        raise BadAnswer(f"{where} answered object {body.get('object')!r}, not {expected_object!r}")
    return body
