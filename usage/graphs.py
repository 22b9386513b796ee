"""Plotly figures built from selector output; pages embed them as JSON (json_script). Legends,
axis titles and hover labels are worded in the active language (build a figure inside the request)."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import groupby
from operator import attrgetter
from typing import Any

import plotly.graph_objects as go
from django.utils.translation import gettext, ngettext, pgettext

from usage.selectors import ModelDay

BASE_LAYOUT = {
    "margin": {"l": 56, "r": 16, "t": 16, "b": 40},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "legend": {"orientation": "h", "y": -0.18},
    "hovermode": "x unified",
    "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
}


def unpriced_models(days: list[ModelDay]) -> list[str]:
    """Models with requests in `days` and no price for any of them: a usage-value chart leaves
    them out (and says so) rather than drawing them as zero."""
    found = []
    for model, points in groupby(sorted(days, key=attrgetter("model")), key=attrgetter("model")):
        rows = list(points)
        if not any(p.cost for p in rows) and any(p.unpriced_requests for p in rows):
            found.append(model)
    return found


def spend_by_model_chart(days: list[ModelDay], currency: str) -> dict[str, Any]:
    """Stacked daily usage value per model. Unpriced models are not drawn (`unpriced_models`);
    a day that had unpriced requests besides priced ones says so in its hover text."""
    fig = go.Figure(layout=BASE_LAYOUT)
    left_out = set(unpriced_models(days))
    for model, points in groupby(sorted(days, key=attrgetter("model", "day")), key=attrgetter("model")):
        if model in left_out:
            continue
        rows = list(points)
        fig.add_bar(
            name=model,
            x=[p.day.isoformat() for p in rows],
            y=[float(p.cost) for p in rows],
            text=[_excludes_unpriced(p.unpriced_requests) if p.unpriced_requests else "" for p in rows],
            textposition="none",
            hovertemplate=f"%{{y:,.2f}} {currency}%{{text}}<extra>{model}</extra>",
        )
    fig.update_layout(barmode="stack", yaxis_title=_usage_value_title(currency), yaxis_tickformat=",.2f", **date_axis())
    return fig.to_plotly_json()


def _usage_value_title(currency: str) -> str:
    return gettext("Usage value (%(currency)s)") % {"currency": currency}


def _excludes_unpriced(count: int) -> str:
    return " · " + ngettext("excludes %(shown)s unpriced request", "excludes %(shown)s unpriced requests", count) % {
        "shown": f"{count:,}"
    }


def date_axis(*, with_time: bool = False) -> dict[str, str]:
    """How the x axis writes its dates in the active language. Plotly writes them in English; the
    catalogue gives another language's d3 time formats for the ticks and the hovered day (or
    moment). {} keeps plotly's own, as in English."""
    english_ticks = "%b %-d"
    # xgettext:no-python-format
    ticks = pgettext("d3 time format of a chart's date ticks", "%b %-d")
    if ticks == english_ticks:
        return {}
    if with_time:
        # xgettext:no-python-format
        hover = pgettext("d3 time format of a chart's hovered moment", "%b %-d, %Y %H:%M")
    else:
        # xgettext:no-python-format
        hover = pgettext("d3 time format of a chart's hovered day", "%b %-d, %Y")
    return {"xaxis_tickformat": ticks, "xaxis_hoverformat": hover}


def tokens_hover(value: str) -> str:
    """A hover label's token count (`value` a plotly placeholder such as "%{y:,}")."""
    return gettext("%(count)s tokens") % {"count": value}


def hover_name(label: str) -> str:
    """The name a hover box shows beside the value (plotly's <extra>)."""
    return f"<extra>{label}</extra>"


def requests_hover(value: str) -> str:
    """A hover label's request count (`value` a plotly placeholder such as "%{y:,}")."""
    return gettext("%(count)s requests") % {"count": value}


def spend_by_team_chart(teams: list[Any], currency: str) -> dict[str, Any]:
    """Horizontal bars of usage value per team (usage_by_team rows), the biggest on top."""
    rows = list(reversed(teams))  # plotly draws the first category at the bottom
    labels = [row.team or gettext("No team") for row in rows]
    fig = go.Figure(layout=BASE_LAYOUT)
    fig.add_bar(
        orientation="h",
        name=gettext("Usage value"),
        x=[float(row.totals.cost) for row in rows],
        y=labels,
        customdata=[[row.totals.requests, row.totals.tokens] for row in rows],
        hovertemplate=(
            f"<b>%{{y}}</b><br>%{{x:,.2f}} {currency}<br>{requests_hover('%{customdata[0]:,}')} · "
            f"{tokens_hover('%{customdata[1]:,}')}<extra></extra>"
        ),
    )
    fig.update_layout(
        xaxis_title=_usage_value_title(currency),
        xaxis_tickformat=",.2f",
        yaxis={"automargin": True},
        hovermode="closest",
        showlegend=False,
        bargap=0.45,
        margin={"l": 16, "r": 16, "t": 8, "b": 48},
    )
    return fig.to_plotly_json()


# --- Engineer pages: Models and Errors (appended) ---------------------------------------------


def model_tokens_chart(days: list[Any]) -> dict[str, Any]:
    """One model's daily prompt and completion tokens, stacked. `days` are selectors.ModelDayUsage."""
    fig = go.Figure(layout=BASE_LAYOUT)
    x = [d.day.isoformat() for d in days]
    for name, values in (
        (gettext("Prompt tokens"), [d.prompt_tokens for d in days]),
        (gettext("Completion tokens"), [d.completion_tokens for d in days]),
    ):
        fig.add_bar(name=name, x=x, y=values, hovertemplate=f"{tokens_hover('%{y:,}')}<extra>{name}</extra>")
    fig.update_layout(barmode="stack", yaxis_title=gettext("Tokens"), yaxis_tickformat=",.3~s", **date_axis())
    return fig.to_plotly_json()


def model_cost_chart(days: list[Any], currency: str) -> dict[str, Any]:
    """One model's daily cost. `days` are selectors.ModelDayUsage."""
    fig = go.Figure(layout=BASE_LAYOUT)
    fig.add_scatter(
        name=gettext("Usage value"),
        x=[d.day.isoformat() for d in days],
        y=[float(d.cost) for d in days],
        mode="lines+markers",
        fill="tozeroy",
        hovertemplate=f"%{{y:,.2f}} {currency}" + hover_name(gettext("Cost")),
    )
    fig.update_layout(
        yaxis_title=_usage_value_title(currency), yaxis_tickformat=",.2f", showlegend=False, **date_axis()
    )
    return fig.to_plotly_json()


def errors_per_day_chart(days: list[Any], labels: Mapping[str, object]) -> dict[str, Any]:
    """Failed requests per day, stacked by cause. `days` are selectors.CauseDay."""
    fig = go.Figure(layout=BASE_LAYOUT)
    for cause, points in groupby(sorted(days, key=attrgetter("cause", "day")), key=attrgetter("cause")):
        rows = list(points)
        label = str(labels.get(cause, cause))
        fig.add_bar(
            name=label,
            x=[p.day.isoformat() for p in rows],
            y=[p.requests for p in rows],
            hovertemplate=f"{requests_hover('%{y:,}')}<extra>{label}</extra>",
        )
    per_day: dict[Any, int] = {}
    for point in days:
        per_day[point.day] = per_day.get(point.day, 0) + point.requests
    # Counts are whole: with a small maximum, plotly would otherwise put ticks at 0.5 steps.
    fig.update_layout(
        barmode="stack",
        yaxis_title=gettext("Failed requests"),
        yaxis_tickformat=",d",
        yaxis_dtick=1 if max(per_day.values(), default=0) <= 8 else None,
        **date_axis(),
    )
    return fig.to_plotly_json()
