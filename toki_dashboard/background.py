"""The one way writes ask for background work: a Celery task named, not imported.

Services run inside the task modules' own imports (a task loads ids and calls a service), so
a service that imported its task module at the top would close an import circle. The task is
named instead; its module is imported on first use (a web server has not imported it yet:
only a worker loads every task module at start), then the task's own `apply_async` is called,
so eager mode and tests that watch a task see it as before.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from toki_dashboard.celery import app


def enqueue(task_name: str, *args: Any, countdown: float = 0.0) -> None:
    """Send `task_name` (e.g. "billing.tasks.refresh_allocations") with `args`, after `countdown` s."""
    import_module(task_name.rpartition(".")[0])  # registers the task; a dictionary lookup once imported
    app.tasks[task_name].apply_async(args=args, countdown=countdown)
