"""Plotly figures built from selector output; pages embed them as JSON (json_script)."""

from __future__ import annotations

from itertools import groupby
from operator import attrgetter
from typing import Any

import plotly.graph_objects as go

from usage.selectors import ModelDay

BASE_LAYOUT = {
    "margin": {"l": 56, "r": 16, "t": 16, "b": 40},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "legend": {"orientation": "h", "y": -0.18},
    "hovermode": "x unified",
    "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
}


def spend_by_model_chart(days: list[ModelDay], currency: str) -> dict[str, Any]:
    fig = go.Figure(layout=BASE_LAYOUT)
    for model, points in groupby(sorted(days, key=attrgetter("model", "day")), key=attrgetter("model")):
        rows = list(points)
        fig.add_bar(
            name=model,
            x=[p.day.isoformat() for p in rows],
            y=[float(p.cost) for p in rows],
            hovertemplate=f"%{{y:,.2f}} {currency}<extra>{model}</extra>",
        )
    fig.update_layout(barmode="stack", yaxis_title=f"Spend ({currency})", yaxis_tickformat=",.2f")
    return fig.to_plotly_json()
