"""Usage pages: thin views over selectors; htmx requests get only the swapped region."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.vary import vary_on_headers

from toki_dashboard.roles import Role, role_required
from usage import graphs, selectors
from usage.periods import PRESETS, Period


def wants_fragment(request: HttpRequest) -> bool:
    """htmx swaps a fragment, except when it restores history: then it replaces the whole body."""
    htmx = request.htmx  # type: ignore[attr-defined]
    return bool(htmx) and not htmx.history_restore_request


@role_required(Role.FINANCE, Role.ENGINEER)
@vary_on_headers("HX-Request")  # the same URL answers a full page or a fragment
def overview(request: HttpRequest) -> HttpResponse:
    # The middleware's lazy account is never `None` itself, only falsy when there is no account.
    account = request.account or None  # type: ignore[attr-defined]
    period = Period.from_query(request.GET)
    context = {"period": period, "presets": PRESETS, "account": account}
    if account is not None:
        current = selectors.totals(account=account, period=period)
        context |= {
            "totals": current,
            "previous": selectors.totals(account=account, period=period.previous()),
            "spend_chart": graphs.spend_by_model_chart(
                selectors.spend_by_model_per_day(account=account, period=period), account.currency
            ),
            "top_models": selectors.top_by(account=account, period=period, dimension="model"),
            "top_keys": selectors.top_by(account=account, period=period, dimension="api_key__name"),
            "unpriced_models": selectors.unpriced_models(account=account, period=period)
            if current.unpriced_requests
            else [],
        }
    template = "usage/partials/overview_body.html" if wants_fragment(request) else "usage/overview.html"
    return render(request, template, context)
