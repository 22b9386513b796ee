"""The JSON API at /api/v1 (DESIGN.md §4.3), its OpenAPI schema and docs page."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from ninja import NinjaAPI
from ninja.errors import ValidationError

from usage.api import router as usage_router
from usage.schemas import IngestBatch

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


api = TokiAPI(
    title="TOKI Dashboard API",
    version="1",
    description="Usage ingestion, summaries, records and balances. Bearer tokens come from "
    "`manage.py create_api_token`; read endpoints also accept a logged-in session.",
    urls_namespace="api",
    docs_decorator=login_required,
)
api.add_router("", usage_router)
api.add_router("", "billing.api.router")


@api.exception_handler(ValidationError)
def invalid_request(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """Query or body validation failures are 400s that name each field."""
    problems = [
        {"field": ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body")), "message": err["msg"]}
        for err in exc.errors
    ]
    detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return api.create_response(request, {"detail": detail, "errors": problems}, status=400)


def api_urls() -> tuple[list[Any], str, str]:
    """The API's URL patterns; the API authenticates by itself (tokens or session) instead of
    redirecting to the login page, so LoginRequiredMiddleware is told to leave it alone."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            pattern.callback.login_required = False  # type: ignore[attr-defined]
    return patterns, app_name, namespace
