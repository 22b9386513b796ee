"""Turn the environment (docs/api.md, Environment variables) into settings, failing loudly on nonsense.

Kept apart from settings.py so the parsing can be tested without reloading Django.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import environ
from django.core.exceptions import ImproperlyConfigured

TRUTHY = {"1", "true", "yes", "on"}
FALSY = {"0", "false", "no", "off", ""}
# Connections a web process's pool keeps open when idle: the logging proxy's writer thread and
# its account lookups each hold one for as long as the process runs.
POOL_MIN_SIZE = 2
# How long a request waits for a pooled connection (all lent, or the database refusing new
# ones) before the API answers 503.
POOL_WAIT_SECONDS = 10


def parse_bool(name: str, raw: str | None, *, default: bool) -> bool:
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUTHY:
        return True
    if value in FALSY:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use true/false, 1/0, yes/no or on/off.")


def parse_positive_int(name: str, raw: str | None, *, default: int) -> int:
    if raw is None or not raw.strip():
        return default
    value = raw.strip().replace("_", "")
    if not value.isdigit() or int(value) < 1:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a positive whole number.")
    return int(value)


# Set by toki_dashboard/asgi.py before the settings load (see database_from_url's pool_size).
_serves_requests = False


def serve_requests() -> None:
    """Mark this process as a web process; call before Django's settings load."""
    global _serves_requests
    _serves_requests = True


def serves_requests() -> bool:
    return _serves_requests


def database_from_url(url: str, *, base_dir: Path, pool_size: int | None = None) -> dict[str, Any]:
    """A DATABASES entry for sqlite:///path or postgres://user:pass@host:port/name.

    With `pool_size` (web processes only), PostgreSQL connections come from a pool of at most
    that many. Django's ASGI handler runs each request in a thread of its own, so a connection
    kept per thread (CONN_MAX_AGE) is a new PostgreSQL session per request, which creates its
    staging tables again and stays open until the collector frees the finished thread. Pooled,
    a request borrows a warm session and gives it back when it ends. Celery's workers and the
    commands keep Django's connection per thread: Celery closes connections around every task,
    and would close a pool with them.
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"DATABASE_URL has an unsupported scheme {scheme or '(none)'!r}; "
            "expected sqlite:///path/to/db.sqlite3 or postgres://user:password@host:5432/name."
        )
    try:
        config = environ.Env.db_url_config(url)
    except Exception as exc:  # environ raises several types for malformed URLs
        raise ImproperlyConfigured(f"DATABASE_URL could not be parsed: {exc}") from exc
    if scheme == "sqlite":
        name = config.get("NAME") or ""
        if not name or name == ":memory:":
            raise ImproperlyConfigured("DATABASE_URL for SQLite needs a file path, e.g. sqlite:///var/toki.sqlite3.")
        path = Path(name)
        if not path.is_absolute():
            path = base_dir / path
        config["NAME"] = str(path)
        # WAL lets the web server read while the worker writes; IMMEDIATE avoids
        # "database is locked" surprises when a read transaction turns into a write.
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    else:
        if not config.get("NAME"):
            raise ImproperlyConfigured("DATABASE_URL for PostgreSQL needs a database name after the host.")
        config["CONN_HEALTH_CHECKS"] = True  # a broken connection is replaced, never handed out (pooled too)
        # No JIT compilation: the pages' aggregates over a month of records cross
        # jit_above_cost and PostgreSQL spent 130-150 ms compiling each for queries that run in
        # less (bench/README.md, "10 million records"). A libpq option, so every process gets it.
        options = config.setdefault("OPTIONS", {})
        options["options"] = f"{options.get('options', '')} -c jit=off".strip()
        if pool_size:
            config["CONN_MAX_AGE"] = 0  # Django's pool requires it: a request's end gives its connection back
            options["pool"] = {
                "min_size": min(POOL_MIN_SIZE, pool_size),
                "max_size": pool_size,
                "timeout": POOL_WAIT_SECONDS,
            }
        else:
            config.setdefault("CONN_MAX_AGE", 60)
    return config


def email_from_url(url: str) -> dict[str, Any]:
    """Email settings for smtp://user:pass@host:port, smtps://…, console:// or file:///path."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "console":
        return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if scheme == "file":
        path = url.split("://", 1)[1]
        if not path:
            raise ImproperlyConfigured("EMAIL_URL file:// needs a folder, e.g. file:///var/mail.")
        return {"EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend", "EMAIL_FILE_PATH": path}
    if scheme not in {"smtp", "smtps", "smtp+tls", "smtp+ssl"}:
        raise ImproperlyConfigured(
            f"EMAIL_URL has an unsupported scheme {scheme or '(none)'!r}; "
            "expected smtp://user:pass@host:port, console:// or file:///path."
        )
    try:
        config = environ.Env.email_url_config(url)
    except Exception as exc:
        raise ImproperlyConfigured(f"EMAIL_URL could not be parsed: {exc}") from exc
    if not config.get("EMAIL_HOST"):
        raise ImproperlyConfigured("EMAIL_URL needs a host, e.g. smtp://user:pass@mail.example.com:587.")
    config["EMAIL_TIMEOUT"] = 10
    return config


def time_zone_name(name: str, raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a known time zone; use an IANA name such as Europe/Paris."
        ) from exc
    return raw


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ImproperlyConfigured(f"LOG_LEVEL={raw!r} is not one of {', '.join(LOG_LEVELS)}.")
    return level


def split_list(raw: str | None, *, default: list[str]) -> list[str]:
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# Under TOKI_VAR_DIR: the development settings `make run` writes once (random secrets, DEBUG on),
# and the port its web server serves, written at each start.
DEVELOPMENT_ENV_FILE = "development.env"
SERVER_ENV_FILE = "server.env"


def dashboard_url(env: Mapping[str, str]) -> str:
    """DASHBOARD_URL, else this machine at the port the web server serves: TOKI_PORT (what
    `make run` starts it on, also written to var/server.env), else PORT, else 8000."""
    explicit = env.get("DASHBOARD_URL", "").strip()
    if explicit:
        return explicit.rstrip("/")
    for name in ("TOKI_PORT", "PORT"):
        raw = env.get(name, "").strip()
        if raw:
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ImproperlyConfigured(f"{name}={raw!r} is not a port number (1–65535).")
            return f"http://127.0.0.1:{int(raw)}"
    return "http://127.0.0.1:8000"


def require_secret_key(env: Mapping[str, str], *, debug: bool) -> str:
    """SECRET_KEY from the environment; no key is ever made up, in development either (a key
    written in the source would sign every development install's sessions alike)."""
    key = env.get("SECRET_KEY", "")
    if key:
        return key
    hint = (
        f"`make run` writes random development secrets to var/{DEVELOPMENT_ENV_FILE}, which every process reads"
        if debug
        else "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(50))'`"
    )
    raise ImproperlyConfigured(f"SECRET_KEY is not set. Set it in the environment; {hint}.")
