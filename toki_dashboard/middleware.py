"""Which TOKI account a page shows: `?account=slug`, else the last one chosen, else the first."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from usage.models import Account

SESSION_KEY = "toki_account"


def _current_account(request: HttpRequest) -> Account | None:
    accounts = Account.objects.order_by("pk")
    slug = request.GET.get("account")
    if slug:
        chosen = accounts.filter(slug=slug).first()
        if chosen is not None and hasattr(request, "session"):
            request.session[SESSION_KEY] = chosen.slug
        return chosen
    remembered = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    if remembered:
        chosen = accounts.filter(slug=remembered).first()
        if chosen is not None:
            return chosen
    return accounts.first()


class CurrentAccountMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.account = SimpleLazyObject(lambda: _current_account(request))  # type: ignore[attr-defined]
        return self.get_response(request)
