"""The Overview: spend, tokens and requests for the period, thin over the selectors."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from toki_dashboard.htmx import render_page
from toki_dashboard.roles import Role, role_required
from usage import graphs, selectors
from usage.periods import PRESETS, Period
from usage.tenancy import current_account, current_account_or_none


@role_required(Role.FINANCE, Role.ENGINEER)
def overview(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    period = Period.from_query(request.GET)
    context = {"period": period, "presets": PRESETS, "account": account}
    if account is not None:
        current = selectors.totals(account=account, period=period)
        context |= {
            "totals": current,
            "previous": selectors.totals(account=account, period=period.previous()),
            "top_models": selectors.top_by(account=account, period=period, dimension="model"),
            "top_keys": selectors.top_by(account=account, period=period, dimension="api_key__name"),
            "unpriced_models": selectors.unpriced_models(account=account, period=period)
            if current.unpriced_requests
            else [],
        }
    return render_page(request, "usage/overview.html", "usage/partials/overview_body.html", context)


@role_required(Role.FINANCE, Role.ENGINEER)
def spend_chart(request: HttpRequest) -> HttpResponse:
    """The daily spend-by-model card, loaded on its own so the totals never wait for it."""
    account = current_account(request)
    period = Period.from_query(request.GET)
    figure = graphs.spend_by_model_chart(
        selectors.spend_by_model_per_day(account=account, period=period), account.currency
    )
    return render(request, "usage/partials/overview_spend_chart.html", {"spend_chart": figure, "period": period})
