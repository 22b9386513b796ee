"""One view, two answers: the full page for a normal visit, the swapped region for htmx."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers


def wants_fragment(request: HttpRequest) -> bool:
    """htmx swaps a fragment, except when it restores history: then it replaces the whole body."""
    htmx = getattr(request, "htmx", None)
    return htmx is not None and bool(htmx) and not htmx.history_restore_request


def render_page(
    request: HttpRequest, page: str, fragment: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """Render `fragment` for htmx and `page` (which includes the fragment) otherwise.

    The answer varies on HX-Request, so no cache ever serves a fragment for a page visit.
    """
    response = render(request, fragment if wants_fragment(request) else page, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response
