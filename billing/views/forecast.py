"""The forecast chart card of Plans & wallet: balance history, projected line and its band."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from billing import graphs
from billing.balances import account_balances
from billing.forecast import balance_history, reported_balances
from toki_dashboard.htmx import render_page
from toki_dashboard.roles import Role, role_required
from usage.tenancy import current_account_or_none


@role_required(Role.FINANCE)
def forecast_chart(request: HttpRequest) -> HttpResponse:
    """htmx loads the card into the Plans page; a plain visit gets it as a page of its own."""
    account = current_account_or_none(request)
    context: dict[str, object] = {"account": account, "tz_name": settings.DASHBOARD_TIME_ZONE}
    if account is not None:
        balances = account_balances(account)  # the forecast the page, card, banner and API show
        now, forecast = balances.at, balances.forecast
        history = balance_history(account, now=now)
        context |= {
            "forecast": forecast,
            "token_chart": graphs.token_balance_chart(history, forecast.projection, forecast.token_run_out, now=now),
            "wallet_chart": graphs.wallet_chart(
                history,
                forecast.projection,
                reported_balances(account, now=now),
                forecast.wallet_run_out,
                currency=account.currency,
                now=now,
            ),
        }
    return render_page(request, "billing/forecast_chart_page.html", "billing/partials/forecast_chart.html", context)
