"""Settings of the processes `tests/test_many_processes.py` starts: the production settings as an
operator runs them, pointed at the test database, with the debounce delays shortened so the
scenario ends in seconds and the queue of the test run that started them."""

import os

from toki_dashboard.settings import *  # noqa: F403

CELERY_TASK_DEFAULT_QUEUE = os.environ["TOKI_TEST_QUEUE"]
CACHES["default"]["KEY_PREFIX"] = f"toki-test-{os.environ['TOKI_TEST_RUN']}"  # noqa: F405  (the run's, tests/settings.py)
BILLING_ALLOCATION_DELAY_SECONDS = 1.0
ALERTS_EVALUATION_DELAY_SECONDS = 1.0
BUDGET_GATE_DELAY_SECONDS = 0.5
STATISTICS_REFRESH_SECONDS = 1.0
# A host would run collectstatic at deploy; these processes serve the source folders instead.
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
