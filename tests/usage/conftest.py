from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from usage.models import TokenScope
from usage.services import create_api_token


@pytest.fixture
def post_records(account) -> Callable[..., Any]:
    """POST /api/v1/usage with an ingest token of `account`: post_records(record, record, …)."""
    token = create_api_token(account=account, name="shipper", scopes=[TokenScope.INGEST])[1]
    client = Client()

    def send(*records: dict[str, Any]) -> Any:
        body = json.dumps({"records": list(records)})
        return client.post(
            "/api/v1/usage", data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )

    return send
