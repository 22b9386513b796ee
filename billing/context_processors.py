"""What every page says about balances (for example: an alert rule is firing)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def firing_alerts(request: HttpRequest) -> dict[str, Any]:
    return {}
