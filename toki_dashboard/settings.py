"""Settings read from the environment (docs/api.md, Environment variables); safe defaults for local use."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import plotly
from dotenv import load_dotenv

from toki_dashboard.config import (
    DEVELOPMENT_ENV_FILE,
    SERVER_ENV_FILE,
    dashboard_url,
    database_from_url,
    email_from_url,
    log_level,
    parse_bool,
    parse_positive_int,
    require_secret_key,
    serves_requests,
    split_list,
    time_zone_name,
)
from toki_dashboard.redaction import install as install_log_redaction

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TOKI_VAR_DIR", BASE_DIR / "var"))
# Prometheus counters of every process (web servers, workers) are kept in files here and summed
# at each scrape of /metrics. Set before prometheus_client is first imported; "" turns it off.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics"))
if os.environ["PROMETHEUS_MULTIPROC_DIR"]:
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
else:  # prometheus_client takes the variable being set at all, even empty, for a folder (".")
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]
# Written by `make run` (random development secrets, DEBUG on): every process started from
# this checkout reads it for what the environment does not set, so manage.py works in a
# second terminal. The environment always wins; production sets its own values.
load_dotenv(VAR_DIR / DEVELOPMENT_ENV_FILE, override=False)
# The port `make run` serves on, written at each start, for DASHBOARD_URL's default.
load_dotenv(VAR_DIR / SERVER_ENV_FILE, override=False)

DEBUG = parse_bool("DEBUG", os.environ.get("DEBUG"), default=False)
SECRET_KEY = require_secret_key(os.environ, debug=DEBUG)
ALLOWED_HOSTS = split_list(
    os.environ.get("ALLOWED_HOSTS"), default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = split_list(os.environ.get("CSRF_TRUSTED_ORIGINS"), default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "csp",
    "ninja",
    "axes",
    "usage",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "toki_dashboard.middleware.ApiErrorsAsJson",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "toki_dashboard.middleware.reject_nul_bytes",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # the browser's language (Accept-Language) by default
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "toki_dashboard.language.chosen_language",  # a signed-in user's own choice wins over the browser's
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: turns a lockout into its page
]

ROOT_URLCONF = "toki_dashboard.urls"
WSGI_APPLICATION = "toki_dashboard.wsgi.application"
ASGI_APPLICATION = "toki_dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "toki_dashboard.context_processors.navigation",
                "usage.context_processors.tenancy",
                "usage.context_processors.repricing_status",
                "billing.context_processors.firing_alerts",
            ],
        },
    },
]

# Per web process (toki_dashboard/config.py, database_from_url): requests in flight plus the two
# connections the logging proxy holds. Every process's pool counts against max_connections.
DATABASE_POOL_SIZE = parse_positive_int("DATABASE_POOL_SIZE", os.environ.get("DATABASE_POOL_SIZE"), default=10)
DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'toki.sqlite3'}"),
        base_dir=BASE_DIR,
        pool_size=DATABASE_POOL_SIZE if serves_requests() else None,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "toki_dashboard.login_throttling.LoginThrottleBackend",  # first: refuses a locked-out login
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling (django-axes): LOGIN_FAILURE_LIMIT wrong passwords for one username from one
# address lock that pair out for LOGIN_LOCKOUT_MINUTES; a successful login resets the count.
AXES_ENABLED = parse_bool("LOGIN_THROTTLING", os.environ.get("LOGIN_THROTTLING"), default=True)
AXES_FAILURE_LIMIT = parse_positive_int("LOGIN_FAILURE_LIMIT", os.environ.get("LOGIN_FAILURE_LIMIT"), default=5)
AXES_COOLOFF_TIME = timedelta(
    minutes=parse_positive_int("LOGIN_LOCKOUT_MINUTES", os.environ.get("LOGIN_LOCKOUT_MINUTES"), default=15)
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "toki_dashboard.login_throttling.client_ip"
AXES_VERBOSE = False  # no start-up banner in every process
# Reverse proxies in front of the server that append to X-Forwarded-For (0: use REMOTE_ADDR).
FORWARDED_FOR_PROXIES = int(os.environ.get("FORWARDED_FOR_PROXIES", "0"))
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "usage:overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
# The dashboard's languages: English and Simplified Chinese (README, Languages). Numbers and
# dates follow the active language (Django's formats, always localised since 5.0).
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
FORMAT_MODULE_PATH = ["toki_dashboard.formats"]  # zh-hans groups digits by thousands, as finance writes them
TIME_ZONE = "UTC"  # storage and logic; pages convert to DASHBOARD_TIME_ZONE
USE_TZ = True
USE_I18N = True
DASHBOARD_TIME_ZONE = time_zone_name("DASHBOARD_TIME_ZONE", os.environ.get("DASHBOARD_TIME_ZONE", "UTC"))

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # plotly.js ships inside the plotly package; serve that exact copy, no CDN.
    ("plotly", Path(plotly.__file__).parent / "package_data"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = True  # `make run` serves without collectstatic

# --- Background work -----------------------------------------------------------
# Server mode: Redis is broker and cache. Embedded mode (no REDIS_URL): a broker on
# the local file system, so `make run` has a real worker and scheduler with no server.
REDIS_URL = os.environ.get("REDIS_URL", "")
EMBEDDED = not REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
if EMBEDDED:
    _broker_dir = VAR_DIR / "broker"
    # kombu's file-system transport does not create its folders; every process needs them.
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://localhost//"  # a host, or kombu warns that it assumes one
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
else:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}

# --- Email ---------------------------------------------------------------------
globals().update(email_from_url(os.environ.get("EMAIL_URL", "console://")))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "TOKI Dashboard <toki@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- TOKI ------------------------------------------------------------------------
TOKI_BASE_URL = os.environ.get("TOKI_BASE_URL", "https://www.tokiai.ai/v1")
FIELD_ENCRYPTION_KEY = os.environ.get("FIELD_ENCRYPTION_KEY", "")

# --- Security ----------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = parse_bool("SESSION_COOKIE_SECURE", os.environ.get("SESSION_COOKIE_SECURE"), default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_SSL_REDIRECT = parse_bool("SECURE_SSL_REDIRECT", os.environ.get("SECURE_SSL_REDIRECT"), default=True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # plotly sets style attributes on the SVG it draws.
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# Every process loads these settings: from here on, each log record it makes has its
# secrets redacted before any handler (Django's, uvicorn's, Celery's) sees it.
install_log_redaction()
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": log_level(os.environ.get("LOG_LEVEL", "INFO"))},
    # django-axes says at INFO every time a login resets the failure count; lockouts are WARNINGs.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# The ingestion API takes up to 10 MB per request, and no page needs more: a larger body is
# refused with 413 while it streams in (toki_dashboard.body_limit), or when a view reads it.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Except the Import page's upload (usage.import_jobs): a file up to IMPORT_MAX_UPLOAD_MB,
# streamed in chunks to IMPORT_UPLOAD_DIR (never held in memory; Django's ASGI handler
# spools the body past FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file first). The worker
# reads the file from there and deletes it when the import ends: web and worker must share it.
IMPORT_MAX_UPLOAD_MB = parse_positive_int("IMPORT_MAX_UPLOAD_MB", os.environ.get("IMPORT_MAX_UPLOAD_MB"), default=1024)
IMPORT_UPLOAD_DIR = Path(os.environ.get("IMPORT_UPLOAD_DIR", VAR_DIR / "imports"))
IMPORT_REJECTIONS_KEPT = 100_000  # rejected lines listed per import; the counts stay exact beyond
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # Django's default, said here: larger bodies spool to disk
NINJA_PAGINATION_MAX_LIMIT = 1000

# --- Billing -----------------------------------------------------------------------
# Provider sync and allocation (billing app). Owned by the billing issue; see README
# "Billing and provider sync".
BILLING_SYNC_TIMEOUT_SECONDS = float(os.environ.get("BILLING_SYNC_TIMEOUT_SECONDS", "20"))
BILLING_SYNC_MAX_RETRIES = 5  # after timeouts, 429 and 5xx; 401/403 are never retried
BILLING_SYNC_RETRY_BASE_SECONDS = 15.0  # doubled on each retry (or Retry-After, if longer)
BILLING_SYNC_RETRY_MAX_SECONDS = 600.0
BILLING_SYNC_INITIAL_LOOKBACK_DAYS = 30  # how far back the first log read of an account goes
BILLING_RECONCILIATION_HOURS = 24  # window each sync reconciles the provider's balance over
BILLING_ALLOCATION_DELAY_SECONDS = 10.0  # allocation requests within this delay share one task
# Every surface reads the balances and their forecast of one moment, cached this long at most
# (and only while purchases, the ledger and allocations stay as they were).
BILLING_BALANCES_MAX_AGE_SECONDS = 300
CELERY_BEAT_SCHEDULE.update(
    {
        # Enqueues a sync for each account whose Account.sync_interval_minutes has elapsed.
        "billing-dispatch-syncs": {"task": "billing.tasks.dispatch_due_syncs", "schedule": 60.0},
        # Expiries that pass without new records, and anything a lost task missed.
        "billing-refresh-allocations": {"task": "billing.tasks.refresh_all_allocations", "schedule": 600.0},
        "billing-full-allocation-check": {
            "task": "billing.tasks.refresh_all_allocations",
            "schedule": 86400.0,
            "kwargs": {"full": True},
        },
    }
)

# --- Usage records: monthly partitions and retention ---------------------------------
# usage.partitions; see README "Partitions, the request-id registry and retention".
# Months of raw (request-level) records kept: older months are dropped, their rollups, paid
# rollups, allocations and reports stay. Unset (the default) keeps everything.
_retention = os.environ.get("RAW_RETENTION_MONTHS", "")
RAW_RETENTION_MONTHS: int | None = (
    parse_positive_int("RAW_RETENTION_MONTHS", _retention, default=0) if _retention.strip() else None
)
USAGE_PARTITIONS_AHEAD = 3  # months of PostgreSQL partitions created before they are needed
CELERY_BEAT_SCHEDULE.update(
    {
        # Partitions ahead, and retention: drops raw months older than RAW_RETENTION_MONTHS.
        "usage-maintain-partitions": {"task": "usage.tasks.maintain_usage_partitions", "schedule": 86400.0},
    }
)

# The model catalogue (billing.model_sync → usage.catalogue): how often each account's
# model list and prices are read; 0 turns the schedule off. See README "Model catalogue".
MODEL_CATALOGUE_SYNC_MINUTES = int(os.environ.get("MODEL_CATALOGUE_SYNC_MINUTES", "60"))
if MODEL_CATALOGUE_SYNC_MINUTES > 0:
    CELERY_BEAT_SCHEDULE.update(
        {
            "billing-sync-model-catalogues": {
                "task": "billing.tasks.dispatch_model_syncs",
                "schedule": MODEL_CATALOGUE_SYNC_MINUTES * 60.0,
            }
        }
    )

# --- Forecasts and alerts ------------------------------------------------------------
# billing.forecast and billing.alerts; see README "Forecasts and alerts".
# The address people open the dashboard at: alert emails link to its pages with it.
DASHBOARD_URL = dashboard_url(os.environ)
ALERTS_EVALUATION_DELAY_SECONDS = 30.0  # after an ingested batch or a sync; requests within it share one run
# A failed delivery (email, webhook, chat) is retried with exponential backoff up to this many attempts.
ALERT_DELIVERY_MAX_ATTEMPTS = 6
ALERT_DELIVERY_RETRY_BASE_SECONDS = 30.0  # doubled after each failure
ALERT_DELIVERY_RETRY_MAX_SECONDS = 3600.0
ALERT_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("ALERT_WEBHOOK_TIMEOUT_SECONDS", "10"))
# A new account gets the standard rules (wallet below zero, token balance low, run-out within
# 7 days, spend surge), told to its channels.
ALERT_DEFAULT_RULES = parse_bool("ALERT_DEFAULT_RULES", os.environ.get("ALERT_DEFAULT_RULES"), default=True)
CELERY_BEAT_SCHEDULE.update(
    {
        "billing-evaluate-alerts": {"task": "billing.tasks.evaluate_all_alerts", "schedule": 300.0},
        # Enforced budgets: periods reset and paid catches up even without new usage.
        "billing-publish-budget-gates": {"task": "billing.tasks.publish_all_budget_gates", "schedule": 60.0},
    },
)
# After a batch of usage, enforced budgets are re-read this soon (requests within it share one run).
BUDGET_GATE_DELAY_SECONDS = 2.0
# After ingestion, PostgreSQL's statistics are refreshed at most this often (usage.statistics).
STATISTICS_REFRESH_SECONDS = 300.0

# --- Proxy -------------------------------------------------------------------------
# The logging proxy (usage.proxy) and the calibrated token estimator it feeds. Owned by
# the proxy issue; see README "Logging proxy".
TOKI_PROXY_CONNECT_TIMEOUT = float(os.environ.get("TOKI_PROXY_CONNECT_TIMEOUT", "10"))
# Longest wait for upstream bytes: the answer of a non-streamed call, the next chunk of a stream.
TOKI_PROXY_TIMEOUT = float(os.environ.get("TOKI_PROXY_TIMEOUT", "600"))
TOKI_PROXY_MAX_CONNECTIONS = int(os.environ.get("TOKI_PROXY_MAX_CONNECTIONS", "1000"))
# "lean": the proxy's own HTTP/1.1 transport (fast); "httpx": httpx's, which honours HTTP(S)_PROXY.
TOKI_PROXY_TRANSPORT = os.environ.get("TOKI_PROXY_TRANSPORT", "lean")
# Ask upstream for usage on streams whose caller did not, and hide it from the caller.
TOKI_PROXY_FORCE_STREAM_USAGE = parse_bool(
    "TOKI_PROXY_FORCE_STREAM_USAGE", os.environ.get("TOKI_PROXY_FORCE_STREAM_USAGE"), default=True
)
TOKI_PROXY_ACCOUNT_CACHE_SECONDS = float(os.environ.get("TOKI_PROXY_ACCOUNT_CACHE_SECONDS", "30"))
# How often each proxy process re-reads the enforced budgets' state from the cache.
TOKI_PROXY_BUDGET_REFRESH_SECONDS = float(os.environ.get("TOKI_PROXY_BUDGET_REFRESH_SECONDS", "2"))
TOKI_PROXY_SPOOL_DIR = Path(os.environ.get("TOKI_PROXY_SPOOL_DIR", VAR_DIR / "spool"))
# Larger request bodies are refused with 413 while they stream in (memory stays flat).
PROXY_MAX_BODY_BYTES = parse_positive_int(
    "PROXY_MAX_BODY_BYTES", os.environ.get("PROXY_MAX_BODY_BYTES"), default=32 * 1024 * 1024
)
# Every caller must also send a dashboard API token with the proxy scope (header X-Toki-Token).
PROXY_REQUIRE_TOKEN = parse_bool("PROXY_REQUIRE_TOKEN", os.environ.get("PROXY_REQUIRE_TOKEN"), default=False)
# Request headers forwarded upstream besides the built-in allow-list (usage.proxy.hygiene).
TOKI_PROXY_FORWARD_HEADERS = tuple(split_list(os.environ.get("TOKI_PROXY_FORWARD_HEADERS"), default=[]))
CELERY_BEAT_SCHEDULE.update(
    {
        # Records the proxy kept on disk while the database was unavailable.
        "usage-replay-proxy-spool": {"task": "usage.tasks.replay_proxy_spool", "schedule": 60.0},
        # Refit the token estimator on the day's reported usage; re-estimate estimated records.
        "usage-calibrate-estimator": {"task": "usage.tasks.calibrate_estimator", "schedule": 86400.0},
    }
)
# httpx logs every request at INFO: one line per proxied call is noise, and costs time.
LOGGING["loggers"]["httpx"] = {"level": "WARNING"}
