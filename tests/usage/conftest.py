from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from toki_dashboard.celery import app
from usage.models import TokenScope
from usage.services import create_api_token


@pytest.fixture
def repricing_runs_after_commit(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> Iterator[Callable[[], Any]]:
    """`with after_commit(): …` saves prices or rates as a committed transaction would, then
    runs the repricing task it enqueued in-process (Celery's eager mode; the real worker is
    tested on its own)."""
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    try:
        yield lambda: django_capture_on_commit_callbacks(execute=True)
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved


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
