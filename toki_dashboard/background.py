"""The one way writes ask for background work: a Celery task named, not imported.

Services run inside the task modules' own imports (a task loads ids and calls a service), so
a service that imported its task module back would close an import circle. Looking the task
up by name in the Celery app's registry at call time keeps the arrow one-way and still calls
the task's own `apply_async`, so eager mode and tests that watch a task see it as before.
"""

from __future__ import annotations

from typing import Any

from toki_dashboard.celery import app


def enqueue(task_name: str, *args: Any, countdown: float = 0.0) -> None:
    """Send `task_name` (e.g. "billing.tasks.refresh_allocations") with `args`, after `countdown` s."""
    app.tasks[task_name].apply_async(args=args, countdown=countdown)
