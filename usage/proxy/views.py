"""The Django side of `/proxy/…`: only reached when the site is not served by its ASGI
application (toki_dashboard.asgi, which `make run` and docker compose use)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt  # callers authenticate upstream with their own key, never with a session
@login_not_required
def not_served(request: HttpRequest, rest: str = "", slug: str = "") -> JsonResponse:
    message = (
        "The logging proxy runs in the ASGI application toki_dashboard.asgi:application "
        "(uvicorn, as `make run` and docker compose start it); this server did not start it."
    )
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": "proxy_not_served"}
    return JsonResponse({"error": error}, status=404)  # nothing at this URL on this server
