"""GET /metrics: Prometheus scrapes an account's figures with a dashboard token of scope `metrics`
(`Authorization: Bearer toki_…`); a token reads its own account only."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from billing.metrics import exposition
from usage.models import TokenScope
from usage.services import authenticate_api_token


def _refuse(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    scheme, _, plaintext = request.headers.get("Authorization", "").partition(" ")
    token = authenticate_api_token(plaintext.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        return _refuse(401, "Send a dashboard API token with the metrics scope: Authorization: Bearer toki_…")
    if not token.allows(TokenScope.METRICS):
        return _refuse(403, "This token does not have the 'metrics' scope.")
    return HttpResponse(exposition(token.account), content_type=CONTENT_TYPE_LATEST)
