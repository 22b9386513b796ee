"""Spend: usage value, paid and tokens by team, key and model for any period, each beside the
period it is compared with. One page for finance and engineers; no key fingerprints, hints or
latency (those stay on Keys & teams). Figures come from `usage.money.summary`, the same read as
the Overview, the statement and the API."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _

from toki_dashboard.htmx import render_page
from toki_dashboard.roles import Role, role_required
from usage import money
from usage.periods import PRESETS, Period
from usage.selectors import NO_TEAM
from usage.tenancy import current_account_or_none

# The page's filters: query parameter → rollup dimension. "~none" stands for "no team" / "no key".
FILTERS = {"team": "team", "key": "api_key__name", "model": "model"}
SECTIONS = [
    # (filter that a row of the section adds, summary group, title, column label, label of "")
    ("team", "team", _("By team"), _("Team"), _("No team")),
    ("key", "api_key", _("By API key"), _("Key"), _("Requests without a key")),
    ("model", "model", _("By model"), _("Model"), _("(no model)")),
]


def _filters(query: QueryDict) -> dict[str, str]:
    """The filters of the query, cleaned: NUL cannot be stored, so nothing is named with it."""
    found = {}
    for name in FILTERS:
        value = query.get(name, "").replace("\x00", "").strip()[:200]
        if value:
            found[name] = value
    return found


def only_of(filters: dict[str, str]) -> dict[str, str]:
    return {FILTERS[name]: "" if value == NO_TEAM else value for name, value in filters.items()}


@role_required(Role.FINANCE, Role.ENGINEER)
def spend(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    period, notice = Period.read(request.GET)
    filters = _filters(request.GET)
    context: dict[str, Any] = {
        "notices": [notice] if notice else [],
        "period": period,
        "presets": PRESETS,
        "account": account,
        "filters": [
            {
                "name": name,
                "label": dict((s[0], s[3]) for s in SECTIONS)[name],
                "value": value,
                "shown": dict((s[0], s[4]) for s in SECTIONS)[name] if value == NO_TEAM else value,
                "without": urlencode(period.as_query() | {k: v for k, v in filters.items() if k != name}),
            }
            for name, value in filters.items()
        ],
        "picker_keep": list(filters.items()),
        "no_value": NO_TEAM,
    }
    if account is not None:
        only = only_of(filters)
        previous_period = period.previous()
        sections = []
        total = previous_total = None
        for name, group_by, title, label, empty in SECTIONS:
            if name in filters:
                continue  # a single group: the totals say it
            rows, total = money.summary(account=account, period=period, group_by=group_by, only=only)
            before, previous_total = money.summary(
                account=account, period=previous_period, group_by=group_by, only=only
            )
            ordered = sorted(rows, key=lambda r: (-r.totals.cost, -r.totals.tokens, r.key))
            sections.append(
                {
                    "name": name,
                    "title": title,
                    "label": label,
                    "empty": empty,
                    "rows": money.compared(ordered, before),
                    "link_base": urlencode(period.as_query() | filters),
                }
            )
        if total is None:  # every filter set: one group, read once
            _, total = money.summary(account=account, period=period, group_by="model", only=only)
            _, previous_total = money.summary(account=account, period=previous_period, group_by="model", only=only)
        assert total is not None and previous_total is not None  # read by a section or just above
        context |= {
            "sections": sections,
            "total": money.compared([total], [previous_total])[0],
            "period_query": period.query_string,
            "query": urlencode(period.as_query() | filters),
        }
    return render_page(request, "usage/spend.html", "usage/partials/spend_body.html", context)
