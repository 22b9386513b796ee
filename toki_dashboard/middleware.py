"""Which TOKI account a page shows (`?account=slug`, else the last one chosen, else the first),
and URLs refused before any view sees them."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
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


def reject_nul_bytes(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """A NUL byte in the path or a query parameter is refused with 400 before any view runs.

    PostgreSQL text cannot hold one, so any lookup with it would fail deep in a query;
    no URL this site makes ever carries one.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        query = request.GET
        if "\x00" in request.path or any("\x00" in k or "\x00" in v for k in query for v in query.getlist(k)):
            message = "The URL contains a NUL character."
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": message}, status=400)
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        return get_response(request)

    return middleware
