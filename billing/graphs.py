"""Plotly figures of the billing pages, built from forecast and selector output (pure functions);
legends, axis titles and hover labels in the active language."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go
from django.utils.translation import gettext

from billing.forecast import BalancePoint, ProjectedPoint, ReportedPoint, RunOut
from usage.graphs import BASE_LAYOUT, date_axis, hover_name, tokens_hover
from usage.periods import dashboard_tz

HISTORY = "rgba(79, 70, 229, 1)"  # the brand indigo, as in app.css
PROJECTION = "rgba(79, 70, 229, 0.9)"
BAND = "rgba(79, 70, 229, 0.14)"
REPORTED = "rgba(217, 119, 6, 1)"
RUN_OUT = "rgba(220, 38, 38, 0.85)"


def _local(moment: datetime) -> str:
    return moment.astimezone(dashboard_tz()).strftime("%Y-%m-%d %H:%M")


def projection_window(projection: list[ProjectedPoint], run_out: RunOut, *, now: datetime) -> list[ProjectedPoint]:
    """The projected points worth drawing: 45 days, or up to a few days past the latest run-out (120 at most)."""
    until = now + timedelta(days=45)
    last = run_out.latest or run_out.at
    if last is not None:
        until = max(until, min(last + timedelta(days=3), now + timedelta(days=120)))
    return [p for p in projection if p.at <= until]


def _run_out_marker(fig: go.Figure, run_out: RunOut, label: str) -> None:
    if run_out.at is None:
        return
    if run_out.already:
        # A "runs out" marker at now would read as money left until today.
        label = gettext("already run out")
    x = _local(run_out.at)
    fig.add_shape(type="line", x0=x, x1=x, y0=0, y1=1, yref="paper", line={"color": RUN_OUT, "width": 1, "dash": "dot"})
    fig.add_annotation(
        x=x, y=1, yref="paper", text=label, showarrow=False, xanchor="left", yanchor="top", font={"color": RUN_OUT}
    )


def _band(fig: go.Figure, x: list[str], high: list[Any], low: list[Any], value: str) -> None:
    """The projection's p10–p90 band: an invisible upper line, and the lower one filled up to it."""
    fig.add_scatter(x=x, y=high, mode="lines", line={"width": 0}, hoverinfo="skip", showlegend=False)
    fig.add_scatter(
        x=x,
        y=low,
        mode="lines",
        line={"width": 0},
        fill="tonexty",
        fillcolor=BAND,
        name=gettext("Likely range (p10–p90)"),
        hovertemplate=value + hover_name(gettext("p10–p90 low")),
    )


def token_balance_chart(
    history: list[BalancePoint], projection: list[ProjectedPoint], run_out: RunOut, *, now: datetime
) -> dict[str, Any]:
    """Token balance of the plans in effect: history, projected line and its p10–p90 band."""
    fig = go.Figure(layout=BASE_LAYOUT)
    points = projection_window(projection, run_out, now=now)
    x = [_local(p.at) for p in points]
    _band(fig, x, [p.token_high for p in points], [p.token_low for p in points], tokens_hover("%{y:,}"))
    fig.add_scatter(
        x=[_local(p.at) for p in history],
        y=[p.token_balance for p in history],
        mode="lines+markers",
        marker={"size": 4},
        line={"color": HISTORY, "width": 2},
        name=gettext("Token balance"),
        hovertemplate=tokens_hover("%{y:,}") + hover_name(gettext("Balance")),
    )
    fig.add_scatter(
        x=x,
        y=[p.token_balance for p in points],
        mode="lines",
        line={"color": PROJECTION, "width": 2, "dash": "dash"},
        name=gettext("Projected"),
        hovertemplate=tokens_hover("%{y:,}") + hover_name(gettext("Projected")),
    )
    _run_out_marker(fig, run_out, gettext("runs out"))
    fig.update_layout(
        yaxis_title=gettext("Tokens"),
        yaxis_tickformat=",.3s",
        yaxis_rangemode="tozero",
        hovermode="x unified",
        **date_axis(with_time=True),
    )
    return fig.to_plotly_json()


def wallet_chart(
    history: list[BalancePoint],
    projection: list[ProjectedPoint],
    reported: list[ReportedPoint],
    run_out: RunOut,
    *,
    currency: str,
    now: datetime,
) -> dict[str, Any]:
    """The wallet from the ledger, what the provider reported, the projected line and its band."""
    fig = go.Figure(layout=BASE_LAYOUT)
    points = projection_window(projection, run_out, now=now)
    x = [_local(p.at) for p in points]
    money = f"%{{y:,.2f}} {currency}"
    _band(fig, x, [float(p.wallet_high) for p in points], [float(p.wallet_low) for p in points], money)
    fig.add_scatter(
        x=[_local(p.at) for p in history],
        y=[float(p.wallet_balance) for p in history],
        mode="lines+markers",
        marker={"size": 4},
        line={"color": HISTORY, "width": 2},
        name=gettext("Wallet (ledger)"),
        hovertemplate=money + hover_name(gettext("Wallet")),
    )
    if reported:
        fig.add_scatter(
            x=[_local(p.at) for p in reported],
            y=[float(p.balance) for p in reported],
            mode="markers",
            marker={"color": REPORTED, "size": 6, "symbol": "diamond"},
            name=gettext("Reported by the provider"),
            hovertemplate=money + hover_name(gettext("Provider")),
        )
    fig.add_scatter(
        x=x,
        y=[float(p.wallet_balance) for p in points],
        mode="lines",
        line={"color": PROJECTION, "width": 2, "dash": "dash"},
        name=gettext("Projected"),
        hovertemplate=money + hover_name(gettext("Projected")),
    )
    _run_out_marker(fig, run_out, gettext("runs out"))
    fig.update_layout(
        yaxis_title=gettext("Wallet (%(currency)s)") % {"currency": currency},
        yaxis_tickformat=",.2f",
        hovermode="x unified",
        **date_axis(with_time=True),
    )
    return fig.to_plotly_json()
