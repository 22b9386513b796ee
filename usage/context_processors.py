"""What every page says about the usage data itself (for example: repricing in progress)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from usage.selectors import repricing_progress


def repricing_status(request: HttpRequest) -> dict[str, Any]:
    """`repricing`: progress of the re-costing running for the current account, else falsy.

    Lazy, so that only templates that show the banner (full pages, not htmx fragments)
    pay for its one indexed query; nothing at all for anonymous visitors.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def progress() -> Any:
        account = getattr(request, "account", None)
        return repricing_progress(account) if account else None

    return {"repricing": SimpleLazyObject(progress)}
