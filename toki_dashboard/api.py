"""The JSON API at /api/v1 (docs/api.md), its OpenAPI schema and docs page."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern
from ninja import NinjaAPI
from ninja.errors import ValidationError
from ninja.parser import Parser

from usage import json_input
from usage.api import router as usage_router
from usage.schemas import IngestBatch
from usage.services import authenticate_api_token

logger = logging.getLogger(__name__)


class TokiAPI(NinjaAPI):
    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        """Adds the ingestion record, which the endpoint validates record by record, to the schema."""
        schema = super().get_openapi_schema(*args, **kwargs)
        documented = IngestBatch.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(documented.pop("$defs", {}))
        components["IngestBatch"] = documented
        return schema


class ExactJsonParser(Parser):
    """Request bodies read with usage.json_input: numbers exact (Decimal), nesting bounded."""

    def parse_body(self, request: HttpRequest) -> Any:
        return json_input.loads(request.body)


api = TokiAPI(
    title="TOKI Dashboard API",
    parser=ExactJsonParser(),
    version="1",
    description="Usage ingestion, summaries, records, balances and budgets. Bearer tokens come from "
    "`manage.py create_api_token`; read endpoints also accept a logged-in session. This schema "
    "is readable with any valid token or a logged-in session.",
    urls_namespace="api",
)
api.add_router("", usage_router)
api.add_router("", "billing.api.router")
api.add_router("", "billing.budgets.api.router")


@api.exception_handler(ValidationError)
def invalid_request(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """Query or body validation failures are 400s that name each field."""
    problems = [
        {"field": ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body")), "message": err["msg"]}
        for err in exc.errors
    ]
    detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return api.create_response(request, {"detail": detail, "errors": problems}, status=400)


# Seconds a client is asked to wait before retrying while the database is unavailable.
RETRY_AFTER_SECONDS = 5


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The database refused or dropped the connection (or every pooled one stayed lent): a 503
    to retry, never a 500. Sending an ingestion batch again is safe: a replay is a duplicate."""
    logger.warning("api: database unavailable for %s %s (%s)", request.method, request.path, type(exc).__name__)
    detail = "The database is unavailable. Try again in a few seconds."
    response = api.create_response(request, {"detail": detail}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def for_any_caller(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The schema is for whoever may call the API: a valid token of any scope or a logged-in
    user; anyone else gets a JSON 401, never the login page."""

    @wraps(view)
    def schema(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        has_token = scheme.lower() == "bearer" and authenticate_api_token(token.strip()) is not None
        if request.user.is_authenticated or has_token:
            return view(request, *args, **kwargs)
        detail = "Send a valid API token (Authorization: Bearer …) or log in."
        return JsonResponse({"detail": detail}, status=401, headers={"WWW-Authenticate": "Bearer"})

    return schema


def api_urls() -> tuple[list[Any], str, str]:
    """The API's URL patterns; the API authenticates by itself (tokens or session) instead of
    redirecting to the login page, so LoginRequiredMiddleware is told to leave it alone. The
    docs page is a page: it asks people to log in."""
    patterns, app_name, namespace = api.urls
    guards: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
        "openapi-json": for_any_caller,
        "openapi-view": login_required,
    }
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            if pattern.name in guards:
                pattern.callback = guards[pattern.name](pattern.callback)
            pattern.callback.login_required = False  # type: ignore[attr-defined]  # LoginRequiredMiddleware reads this attribute on views
    return patterns, app_name, namespace
