"""The `environment` block: every variable `toki_dashboard/settings.py` reads, with its default as
written there, and a hand-written meaning below (ENVIRONMENT)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from api_reference.markdown import table

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS_FILE = ROOT / "toki_dashboard" / "settings.py"
CONFIG_FILE = ROOT / "toki_dashboard" / "config.py"

# Every environment variable the settings read: what it means, and its default when the
# settings compute it rather than write it out.
ENVIRONMENT: dict[str, tuple[str, str | None]] = {
    "TOKI_VAR_DIR": (
        "Where embedded mode keeps its database, broker, cache, static files, beat schedule, "
        "proxy spool, metrics and `development.env`.",
        "`var/` in the project",
    ),
    "PROMETHEUS_MULTIPROC_DIR": (
        "Where every process keeps its Prometheus counters, summed by `/metrics`; empty keeps them per process.",
        "`$TOKI_VAR_DIR/metrics`",
    ),
    "DEBUG": ("Development mode (`true/false`, `1/0`, `yes/no`, `on/off`).", None),
    "ALLOWED_HOSTS": ("Host names served, comma-separated.", "`localhost,127.0.0.1,[::1]` with `DEBUG`, else none"),
    "CSRF_TRUSTED_ORIGINS": ("Origins allowed to post forms, comma-separated, with scheme.", "none"),
    "DATABASE_URL": (
        "`postgres://user:password@host:port/name` or `sqlite:///path` (relative to the project).",
        "`sqlite:///$TOKI_VAR_DIR/toki.sqlite3`",
    ),
    "DATABASE_POOL_SIZE": (
        "PostgreSQL connections each web process pools and lends to its requests (two of them are held by "
        "the logging proxy); requests beyond wait for one. Workers and commands keep a connection each.",
        None,
    ),
    "LOGIN_THROTTLING": ("Lock a username out from an address after too many wrong passwords.", None),
    "LOGIN_FAILURE_LIMIT": ("Wrong passwords for one username from one address before the lockout.", None),
    "LOGIN_LOCKOUT_MINUTES": ("How long a lockout lasts.", None),
    "FORWARDED_FOR_PROXIES": (
        "Reverse proxies in front that append to `X-Forwarded-For` (0: the connection's address is the client's).",
        None,
    ),
    "DASHBOARD_TIME_ZONE": (
        "The IANA time zone pages show days and hours in (storage is UTC); after a "
        "change run `manage.py rebuild_rollups` once.",
        None,
    ),
    "REDIS_URL": ("Redis for the Celery broker and the cache: server mode. Unset: embedded mode.", "unset"),
    "EMAIL_URL": ("`smtp://user:pass@host:port` (`smtp+tls://`, `smtp+ssl://`), `console://` or `file:///path`.", None),
    "DEFAULT_FROM_EMAIL": ("Sender of alert emails.", None),
    "TOKI_BASE_URL": ("Default TOKI API base URL of new accounts.", None),
    "FIELD_ENCRYPTION_KEY": (
        "Fernet key(s) for credentials and channel secrets at rest; comma-separated "
        "keys rotate (the first encrypts). Required to store credentials unless "
        "`DEBUG`.",
        "none",
    ),
    "SESSION_COOKIE_SECURE": ("Session and CSRF cookies over HTTPS only (read only without `DEBUG`).", None),
    "SECURE_SSL_REDIRECT": ("Redirect HTTP to HTTPS (read only without `DEBUG`).", None),
    "SECURE_HSTS_SECONDS": ("HSTS max-age (read only without `DEBUG`).", None),
    "LOG_LEVEL": ("Log level of every process; secrets are redacted at every level.", None),
    "BILLING_SYNC_TIMEOUT_SECONDS": ("Timeout of each request to the provider during a sync.", None),
    "RAW_RETENTION_MONTHS": (
        "Months of request-level records kept before the current one; older months are dropped "
        "(a partition per statement on PostgreSQL) while rollups, plans, budgets and reports stay exact.",
        "keep everything",
    ),
    "IMPORT_MAX_UPLOAD_MB": (
        "The largest file the Import page accepts, in MB (streamed to disk, never in memory).",
        None,
    ),
    "IMPORT_UPLOAD_DIR": (
        "Where the Import page's uploads wait for their import; the web server and the worker must share it.",
        "`$TOKI_VAR_DIR/imports`",
    ),
    "MODEL_CATALOGUE_SYNC_MINUTES": (
        "How often each account's model list and prices are read; 0 turns the schedule off.",
        None,
    ),
    "DASHBOARD_URL": (
        "The address people open the dashboard at, for links in alerts.",
        "`http://127.0.0.1:<port>`: the port `make run` serves on (`TOKI_PORT`, kept in "
        "`var/server.env`), else `PORT`, else 8000",
    ),
    "ALERT_WEBHOOK_TIMEOUT_SECONDS": (
        "How long a webhook channel may take to answer before the delivery is retried.",
        None,
    ),
    "ALERT_DEFAULT_RULES": ("A new account starts with the standard alert rules.", None),
    "TOKI_PROXY_CONNECT_TIMEOUT": ("Seconds to connect upstream (and to wait for a free connection).", None),
    "TOKI_PROXY_TIMEOUT": ("Seconds to wait for upstream bytes (an answer, the next chunk).", None),
    "TOKI_PROXY_MAX_CONNECTIONS": ("Upstream connections open at once, per process.", None),
    "TOKI_PROXY_TRANSPORT": ("`lean` (the proxy's own HTTP/1.1 transport) or `httpx` (honours `HTTP(S)_PROXY`).", None),
    "TOKI_PROXY_FORCE_STREAM_USAGE": (
        "Ask upstream for stream usage the caller did not ask for, and hide it from the caller.",
        None,
    ),
    "TOKI_PROXY_ACCOUNT_CACHE_SECONDS": ("How long the proxy caches an account (base URL, tokens).", None),
    "TOKI_PROXY_BUDGET_REFRESH_SECONDS": (
        "How often each proxy process re-reads which enforced budgets are exhausted.",
        None,
    ),
    "TOKI_PROXY_SPOOL_DIR": ("Where proxy records wait while the database is unavailable.", "`$TOKI_VAR_DIR/spool`"),
    "PROXY_MAX_BODY_BYTES": (
        "Largest request body the proxy accepts, in bytes (413 `request_too_large` beyond).",
        None,
    ),
    "PROXY_REQUIRE_TOKEN": (
        "Every proxy caller also needs a dashboard API token with the `proxy` scope, in `X-Toki-Token`.",
        None,
    ),
    "TOKI_PROXY_FORWARD_HEADERS": (
        "Request headers to forward upstream besides the allow-list, comma-separated.",
        "none",
    ),
    "SECRET_KEY": ("Signs sessions and CSRF tokens. Required; no key is ever made up.", "none (required)"),
}


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and getattr(node.value, "id", "") == "os"


def _literal(node: ast.expr | None) -> str | None:
    """A default written as a literal (or arithmetic on literals), as text; None otherwise."""
    if node is None:
        return None
    try:
        value = eval(compile(ast.Expression(node), "<default>", "eval"), {"__builtins__": {}})  # noqa: S307
    except Exception:
        return None
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str | int | float):
        return f"`{value}`" if value != "" else "empty"
    return None


def environment_variables() -> Iterator[tuple[str, str | None]]:
    """(name, default as written) for each variable the settings read, in the order they read them."""
    tree = ast.parse(SETTINGS_FILE.read_text())
    seen: dict[str, str | None] = {}
    for node in ast.walk(tree):
        name, default = None, None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_environ(node.func.value):
            if node.func.attr in ("get", "setdefault") and node.args and isinstance(node.args[0], ast.Constant):
                name = node.args[0].value
                default = _literal(node.args[1]) if len(node.args) > 1 else None
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.slice, ast.Constant):
            name = node.slice.value
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "").startswith("parse_")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            name = node.args[0].value
            default = next((_literal(k.value) for k in node.keywords if k.arg == "default"), None)
        if name is not None:
            seen.setdefault((node.lineno, name), default)  # type: ignore[arg-type]
    order: dict[str, str | None] = {}
    for (_, name), default in sorted(seen.items()):
        order[name] = order.get(name) or default
    # Read through toki_dashboard.config (env.get("…")): the secret key.
    for node in ast.walk(ast.parse(CONFIG_FILE.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and getattr(node.func.value, "id", "") == "env"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            order.setdefault(node.args[0].value, None)
    yield from order.items()


def environment_block() -> str:
    rows = []
    found = dict(environment_variables())
    missing = sorted(set(found) - set(ENVIRONMENT))
    unknown = sorted(set(ENVIRONMENT) - set(found))
    if missing or unknown:
        raise SystemExit(
            f"docs/api_reference/environment.py ENVIRONMENT: describe {missing or 'nothing'}; "
            f"remove {unknown or 'nothing'} (no longer read by the settings)"
        )
    for name, default in found.items():
        meaning, written = ENVIRONMENT[name]
        shown = written or default
        if shown is None:
            raise SystemExit(
                f"docs/api_reference/environment.py ENVIRONMENT: {name}'s default is computed; write it out"
            )
        rows.append((f"`{name}`", shown, meaning))
    return table(("variable", "default", "meaning"), rows)
