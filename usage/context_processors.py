"""What every page says about its account (which one, which others the user may switch to) and
about the usage data itself (for example: repricing in progress)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from usage.selectors import repricing_progress
from usage.tenancy import shown_account, visible_accounts


def tenancy(request: HttpRequest) -> dict[str, Any]:
    """`shown_account`: the account the page is about (None on error pages without one);
    `account_choices`: every account the user may see, for the switcher. Both lazy."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "shown_account": SimpleLazyObject(lambda: shown_account(request)),
        "account_choices": SimpleLazyObject(lambda: list(visible_accounts(user).only("name", "slug", "currency"))),
    }


def repricing_status(request: HttpRequest) -> dict[str, Any]:
    """`repricing`: progress of the re-costing running for the current account, else falsy.

    Lazy, so that only templates that show the banner (full pages, not htmx fragments)
    pay for its one indexed query; nothing at all for anonymous visitors.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def progress() -> Any:
        account = shown_account(request)
        return repricing_progress(account) if account else None

    return {"repricing": SimpleLazyObject(progress)}
