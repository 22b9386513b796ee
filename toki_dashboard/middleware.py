"""Requests refused before any view sees them, and error answers of the API kept JSON."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from toki_dashboard.body_limit import too_large_message


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


API_PREFIX = "/api/"


class ApiErrorsAsJson:
    """Every error answer under /api/ is JSON `{"detail": …}`, whoever produced it.

    The API's own errors already are; this covers what Django answers around it (an
    unknown path, a method not allowed, a body too large, an unexpected exception turned
    into a 500 by the handler), which would otherwise be an HTML page. It sits near the top
    of MIDDLEWARE, so it also sees the answers the middleware below it give. Nothing internal is
    shown: the detail is the status's reason phrase; exceptions are logged as usual.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith(API_PREFIX)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return _json_error(response.status_code, response.reason_phrase, response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if request.path.startswith(API_PREFIX) and isinstance(exception, RequestDataTooBig):
            return JsonResponse({"detail": too_large_message(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)}, status=413)
        return None


def _json_error(status: int, detail: str, original: HttpResponse) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=status)
    if allow := original.get("Allow"):  # 405 says which methods are
        response["Allow"] = allow
    return response
