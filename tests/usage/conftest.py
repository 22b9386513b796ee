from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from toki_dashboard.celery import app


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
