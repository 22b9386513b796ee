"""`manage.py check` says when the daily rollup holds another time zone's days."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DatabaseError

from usage.models import Account


@register(Tags.database)
def daily_rollup_zone(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        stale = list(
            Account.objects.exclude(daily_rollup_zone=settings.DASHBOARD_TIME_ZONE).values_list("slug", flat=True)
        )
    except DatabaseError:  # not migrated yet: nothing to compare
        return []
    if not stale:
        return []
    return [
        Warning(
            f"The daily usage rollup of {', '.join(stale)} holds days of another time zone than "
            f"DASHBOARD_TIME_ZONE={settings.DASHBOARD_TIME_ZONE}; pages read the slower hourly rollup meanwhile.",
            hint="Run `manage.py rebuild_rollups` once after changing DASHBOARD_TIME_ZONE.",
            id="usage.W001",
        )
    ]
