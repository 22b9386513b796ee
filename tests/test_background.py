"""Services enqueue tasks by name (toki_dashboard.background): that must work in a process that
never imported the task modules, as a web server is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """
import os, sys
import django
django.setup()
assert "billing.tasks" not in sys.modules, "the premise: nothing imported the billing tasks yet"
from celery.app.task import Task
sent = []
Task.apply_async = lambda self, args=None, countdown=None, **kw: sent.append((self.name, args, countdown))
from toki_dashboard import background
background.enqueue("billing.tasks.refresh_allocations", 7, countdown=1.5)
background.enqueue("usage.tasks.reprice_records", [], countdown=0)
print(sent)
"""


def test_a_process_that_never_imported_the_tasks_can_enqueue_them_by_name():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}

    run = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert "('billing.tasks.refresh_allocations', (7,), 1.5)" in run.stdout
    assert "('usage.tasks.reprice_records', ([],), 0)" in run.stdout
