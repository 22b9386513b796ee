"""The Overview: usage value and paid, tokens and requests for the period, thin over the selectors."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from toki_dashboard.htmx import render_page
from toki_dashboard.roles import Role, role_required
from usage import graphs, money, selectors
from usage.exchange import rates_applied
from usage.periods import PRESETS, Period
from usage.tenancy import current_account, current_account_or_none


@role_required(Role.FINANCE, Role.ENGINEER)
def overview(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    period, notice = Period.read(request.GET)
    context = {
        "period": period,
        "presets": PRESETS,
        "account": account,
        "no_value": selectors.NO_TEAM,
        "notices": [notice] if notice else [],
    }
    if account is not None:
        current = selectors.totals(account=account, period=period)
        previous_period = period.previous()
        previous = selectors.totals(account=account, period=previous_period)
        paid_by_model = money.paid_by(account, period, "model")
        paid_by_key = money.paid_by(account, period, "api_key__name")
        previous_paid = money.paid_total(account, previous_period)
        context |= {
            "totals": current,
            "previous": previous,
            "total_money": money.MoneyRow("", current, money.total_of(paid_by_model)),
            "previous_money": money.MoneyRow("", previous, previous_paid),
            "top_models": money.with_paid(
                selectors.top_by(account=account, period=period, dimension="model"), paid_by_model
            ),
            "top_keys": money.with_paid(
                selectors.top_by(account=account, period=period, dimension="api_key__name"), paid_by_key
            ),
            "unpriced_models": selectors.unpriced_models(account=account, period=period)
            if current.unpriced_requests
            else [],
            "rates_applied": rates_applied(account, period.start, period.end),
        }
    return render_page(request, "usage/overview.html", "usage/partials/overview_body.html", context)


@role_required(Role.FINANCE, Role.ENGINEER)
def spend_chart(request: HttpRequest) -> HttpResponse:
    """The daily spend-by-model card, loaded on its own so the totals never wait for it."""
    account = current_account(request)
    period, _ = Period.read(request.GET)  # the page around the card says what was not understood
    days = selectors.spend_by_model_per_day(account=account, period=period)
    context = {
        "spend_chart": graphs.spend_by_model_chart(days, account.currency),
        "chart_unpriced_models": graphs.unpriced_models(days),
        "period": period,
        "account": account,
    }
    return render_page(
        request, "usage/overview_spend_chart_page.html", "usage/partials/overview_spend_chart.html", context
    )
