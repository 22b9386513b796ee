"""What every page says about the usage data itself (for example: repricing in progress)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def repricing_status(request: HttpRequest) -> dict[str, Any]:
    return {}
