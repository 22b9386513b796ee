"""Test settings: the production settings, with secrets for tests and nothing written to var/."""

import os
import tempfile
import uuid

os.environ.setdefault("SECRET_KEY", "test-secret-key-for-the-test-suite-only")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "test-field-encryption-key")
os.environ.setdefault("TOKI_VAR_DIR", tempfile.mkdtemp(prefix="toki-test-var-"))
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")

from toki_dashboard.settings import *  # noqa: F403

SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; tests only
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# A queue and cache keys of its own per run, so what another run left in a shared Redis is never
# read: a task is never consumed, and a published budget gate or debounce key is never found by an
# account of this run that has the same id (each run's test database counts ids from 1 again).
# Processes a test starts inherit the run's name through the environment.
TEST_RUN = os.environ.setdefault("TOKI_TEST_RUN", uuid.uuid4().hex[:8])
CELERY_TASK_DEFAULT_QUEUE = f"toki-test-{TEST_RUN}"
CACHES["default"]["KEY_PREFIX"] = f"toki-test-{TEST_RUN}"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (WhiteNoise warns when it is missing)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not shared-cache memory: threads and worker processes then wait for locks
    # (busy timeout, WAL) as they do in production instead of failing at once.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["TOKI_VAR_DIR"], "test.sqlite3")}  # noqa: F405
# A new account's standard alert rules would fire in every test that drains a balance; the
# tests that are about them turn this on.
ALERT_DEFAULT_RULES = False
