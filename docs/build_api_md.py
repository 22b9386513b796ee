"""Regenerate the reference parts of docs/api.md from the code.

    .venv/bin/python docs/build_api_md.py          # rewrite the generated blocks of docs/api.md
    .venv/bin/python docs/build_api_md.py --check  # exit 1 when docs/api.md is out of date

docs/api.md is prose written by hand around blocks marked `<!-- generated:NAME -->` …
`<!-- /generated:NAME -->`. Only those blocks are rewritten, each from its source of truth:

- `scopes`: the API token scopes (`usage.models.TokenScope`);
- `endpoints` and `schemas`: the OpenAPI document of `/api/v1` (`toki_dashboard.api.api`),
  with the token scope and session roles each endpoint accepts read from its auth objects;
- `commands`: each management command of `usage` and `billing`, from the parser its `--help`
  prints, the `CommandError`s it raises (exit status 1) and one hand-written line below
  (COMMAND_OUTPUT) on what it prints;
- `environment`: every variable `toki_dashboard/settings.py` reads, with its default as written
  there, and a hand-written meaning below (ENVIRONMENT).

A new endpoint, option or command changes the blocks by itself; a new environment variable or
command without a line below stops the build and says which. `tests/test_docs.py` fails
while docs/api.md differs from what this script writes.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
API_MD = ROOT / "docs" / "api.md"
SETTINGS_FILE = ROOT / "toki_dashboard" / "settings.py"
CONFIG_FILE = ROOT / "toki_dashboard" / "config.py"
COMMAND_APPS = ("usage", "billing")
BLOCK = re.compile(r"(<!-- generated:(?P<name>[a-z]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)

# What each command prints on success (the reference lists its arguments and failures itself).
COMMAND_OUTPUT = {
    "add_member": "One line: the user is (already) a member of the account, with the role given.",
    "calibrate_estimator": "The fits tried, kept or rejected with their held-out errors, and how many records "
    "were re-estimated; or that there are not enough records to fit yet.",
    "correct_failed_calls": "Per account, the failed calls corrected and the tokens and money removed; or that "
    "no failed call is billed.",
    "create_account": "One line naming the account created: slug, name, currency, provider.",
    "create_api_token": "The token on stdout, alone on its line (so `$(…)` captures it); its name and scopes, "
    "and a reminder that it is shown once, on stderr.",
    "create_alert_channel": "`Channel N (kind, hint) added to SLUG.`; for a webhook without `--secret`, the "
    "signing secret it made, once, on stderr.",
    "evaluate_alerts": "One line per rule (account, rule, state, what it says now), then how many accounts were "
    "evaluated, notifications made and deliveries retried.",
    "maintain_usage_records": "What it kept, dropped and created: the raw months kept (RAW_RETENTION_MONTHS), "
    "the partitions dropped and the monthly partitions created ahead (PostgreSQL).",
    "import_usage": "Each row that cannot be stored on stderr, with its line and field (see docs/import.md); "
    "a summary of stored, duplicate, conflicting, rejected and set-aside rows on stdout.",
    "rebuild_rollups": "Per account, whether the rollups match a recount, the groups that differ and (unless "
    "`--verify-only`) how many groups were rebuilt; exit status 1 while they still differ.",
    "replay_dead_letters": "Each letter still refused on stderr; a summary of replayed, already stored and "
    "still open letters on stdout.",
    "seed_demo": "The demo account, the time window and what was added: records, duplicates, conflicts "
    "(a second run adds nothing).",
    "set_exchange_rate": "The rate entered (`1 USD = 7.1234 CNY from … UTC`), whether it replaces an earlier entry "
    "for that moment, and which records are re-valued in the background.",
    "simulate_upstream": "The address it serves on; then runs until interrupted.",
    "sync_models": "Per account, the models listed, new, removed and back, and the prices added and changed, "
    "or the error.",
    "sync_prices": "`genai-prices: N added, N changed, N unchanged.`, and how many prices' records are "
    "repriced in the background.",
    "sync_provider": "Per account, the outcome of the sync, its duration, records added and duplicates (or "
    "that a sync is already running).",
}

# Query parameters whose schema carries no description: what each means, whichever endpoint
# takes it. A new parameter without a description here (or in its schema) stops the build.
PARAMETERS = {
    "start": "First day of the period (inclusive), a day of `DASHBOARD_TIME_ZONE`",
    "end": "Last day of the period (inclusive); not before `start`",
    "group_by": "The dimension of the rows: model, API key name, team, or day",
    "account": "The account's slug; a token may only name its own, a user one they may see. "
    "Default: the token's account, or the user's current one",
    "model": "Only this model (exact name)",
    "api_key": "Only this API key (its name)",
    "team": "Only this team",
    "error_cause": "Only this error cause (`none`: successful calls)",
    "source": "Only records that arrived this way",
    "estimated": "`true`: only records with estimated tokens; `false`: only reported ones",
    "limit": "Records per page",
    "cursor": "The `next_cursor` of the previous page; absent for the first page",
}

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


# --- Django -----------------------------------------------------------------------------


def setup_django() -> None:
    """Django with the test settings: they need no secret from the environment and write
    nothing under var/; nothing rendered here depends on them."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()


# --- Blocks -----------------------------------------------------------------------------


def render(text: str) -> str:
    """`text` (docs/api.md) with every generated block written afresh."""
    builders: dict[str, Callable[[], str]] = {
        "scopes": scopes_block,
        "endpoints": lambda: endpoints_block(openapi()),
        "schemas": lambda: schemas_block(openapi()),
        "proxy": proxy_block,
        "commands": commands_block,
        "environment": environment_block,
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in builders:
            raise SystemExit(f"docs/api.md: unknown generated block {name!r}")
        return f"{match.group(1)}{builders[name]().rstrip()}\n{match.group(4)}"

    return BLOCK.sub(replace, text)


def cell(text: Any) -> str:
    """Text fit for a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def scopes_block() -> str:
    from usage.models import TokenScope

    return table(("scope", "allows"), [(f"`{value}`", label) for value, label in TokenScope.choices])


# --- The OpenAPI document -----------------------------------------------------------------

_SCHEMA: dict[str, Any] = {}


def openapi() -> dict[str, Any]:
    if not _SCHEMA:
        from toki_dashboard.api import api

        _SCHEMA.update(api.get_openapi_schema())
    return _SCHEMA


def anchor(title: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_of(schema: dict[str, Any]) -> str:
    """A field's type in words: `string (date-time)`, `list of [RecordIn](#recordin)`, `integer or null`…"""
    if "$ref" in schema:
        name = ref_name(schema["$ref"])
        return f"[{name}](#{anchor(name)})"
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return type_of(schema["allOf"][0])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " or ".join(dict.fromkeys(type_of(s) for s in schema[union]))
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return '`""`' if schema["const"] == "" else f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        text = f"list of {type_of(schema.get('items', {}))}"
    elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        text = f"object of {type_of(schema['additionalProperties'])}"
    else:
        text = str(kind)
        if "format" in schema:
            text += f" ({schema['format']})"
    limits = constraints(schema)
    return f"{text} ({limits})" if limits else text


def constraints(schema: dict[str, Any]) -> str:
    words = {
        "minimum": "≥ {}",
        "exclusiveMinimum": "> {}",
        "maximum": "≤ {}",
        "exclusiveMaximum": "< {}",
        "minLength": "≥ {} characters",
        "maxLength": "≤ {} characters",
        "minItems": "≥ {} items",
        "maxItems": "≤ {} items",
        "pattern": "matches `{}`",
    }
    return ", ".join(text.format(schema[key]) for key, text in words.items() if key in schema)


def default_of(schema: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" in schema:
        value = schema["default"]
        if value == "":
            return '`""`'
        return "null" if value is None else f"`{value}`".replace("`True`", "`true`").replace("`False`", "`false`")
    return "optional"


def fields_table(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = [
        (f"`{name}`", type_of(field), default_of(field, name in required), field.get("description", ""))
        for name, field in schema.get("properties", {}).items()
    ]
    return table(("field", "type", "required / default", "meaning"), rows)


def auth_of(method: str, path: str) -> str:
    """Who may call an endpoint, read from its auth objects (usage.auth)."""
    from toki_dashboard.api import api
    from usage.auth import SessionRoleAuth, TokenAuth

    prefix = "/api/v1"
    for _, router in api._routers:
        for route, view in router.path_operations.items():
            for operation in view.operations:
                if method.upper() in operation.methods and prefix + route == path:
                    parts = []
                    for auth in operation.auth_callbacks:
                        if isinstance(auth, TokenAuth):
                            parts.append(f"a token with the `{auth.scope}` scope")
                        elif isinstance(auth, SessionRoleAuth):
                            roles = " or ".join(f"`{r}`" for r in auth.roles)
                            parts.append(f"the session of a logged-in user with the role {roles} (or `admin`)")
                        else:
                            parts.append(type(auth).__name__)
                    return ", or ".join(parts)
    raise SystemExit(f"no operation for {method.upper()} {path}")


def parameter_meaning(parameter: dict[str, Any]) -> str:
    meaning = parameter.get("description") or parameter.get("schema", {}).get("description")
    meaning = meaning or PARAMETERS.get(parameter["name"])
    if not meaning:
        raise SystemExit(f"docs/build_api_md.py PARAMETERS: say what the query parameter {parameter['name']!r} means")
    return meaning


def endpoints_block(schema: dict[str, Any]) -> str:
    out = []
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            title = f"{method.upper()} {path}"
            out.append(f"### {title}\n")
            out.append(f"**{op.get('summary', '')}.** {' '.join(op.get('description', '').split())}\n")
            out.append(f"*Who:* {auth_of(method, path)}.\n")
            params = op.get("parameters", [])
            if params:
                rows = [
                    (
                        f"`{p['name']}`",
                        type_of(p.get("schema", {})),
                        default_of(p.get("schema", {}), p.get("required", False)),
                        parameter_meaning(p),
                    )
                    for p in params
                ]
                out.append("*Query parameters:*\n")
                out.append(table(("parameter", "type", "required / default", "meaning"), rows) + "\n")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                out.append(f"*Body:* JSON, {type_of(body)}.\n")
            answers, problems = [], []
            for status, answer in op.get("responses", {}).items():
                content = answer.get("content", {}).get("application/json", {}).get("schema", {})
                if content.get("$ref", "").endswith("/Problem"):
                    problems.append(f"`{status}`")
                else:
                    answers.append(f"`{status}` {type_of(content)}")
            out.append(f"*Answers:* {'; '.join(answers)}. *Errors* ([Problem](#problem)): {', '.join(problems)}.\n")
    return "\n".join(out)


def schemas_block(schema: dict[str, Any]) -> str:
    out = []
    for name, component in sorted(schema.get("components", {}).get("schemas", {}).items()):
        out.append(f"#### {name}\n")
        if component.get("description"):
            out.append(" ".join(component["description"].split()) + "\n")
        if component.get("properties"):
            out.append(fields_table(component) + "\n")
        elif "enum" in component:
            out.append(f"A string: {type_of(component)}.\n")
        else:
            out.append(f"{type_of(component)}.\n")
    return "\n".join(out)


# --- The logging proxy -------------------------------------------------------------------------


def proxy_block() -> str:
    """What the proxy records and which headers cross it (usage.proxy.measure, usage.proxy.hygiene)."""
    from usage.proxy import hygiene, measure

    def names(values: Any) -> str:
        return ", ".join(f"`{v.decode() if isinstance(v, bytes) else v}`" for v in sorted(values))

    def prefixes(values: Any) -> str:
        return ", ".join(f"`{v.decode()}*`" for v in values)

    rows = [
        ("calls that leave a UsageRecord (path after `/v1`)", names(measure.RECORDED)),
        (
            "request headers forwarded upstream",
            f"{names(hygiene.REQUEST_HEADERS)}, {prefixes(hygiene.REQUEST_PREFIXES)}"
            " and those listed in `TOKI_PROXY_FORWARD_HEADERS`",
        ),
        (
            "response headers relayed to the caller",
            f"{names(hygiene.RESPONSE_HEADERS)}, {prefixes(hygiene.RESPONSE_PREFIXES)}",
        ),
        ("never forwarded, either way", names(hygiene.NEVER_FORWARDED)),
        (
            "tags of the record, not forwarded",
            ", ".join(f"`{h.decode()}` → metadata `{f}`" for h, f in sorted(hygiene.TAG_HEADERS.items())),
        ),
        ("the dashboard token (`PROXY_REQUIRE_TOKEN`), not forwarded", f"`{hygiene.TOKEN_HEADER.decode()}`"),
    ]
    return table(("", ""), rows)


# --- Management commands --------------------------------------------------------------------

# Options every Django command has; the reference leaves them out.
DJANGO_OPTIONS = {
    "help",
    "version",
    "verbosity",
    "settings",
    "pythonpath",
    "traceback",
    "no_color",
    "force_color",
    "skip_checks",
}


def project_commands() -> list[tuple[str, str]]:
    from django.core.management import get_commands

    return sorted((name, app) for name, app in get_commands().items() if app in COMMAND_APPS)


def _metavar(action: argparse.Action) -> str:
    if action.choices:
        return "|".join(str(c) for c in action.choices)
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest.upper()


def usage_line(name: str, actions: list[argparse.Action]) -> str:
    parts = ["manage.py", name]
    for action in actions:
        if not action.option_strings:
            parts.append(_metavar(action) if action.nargs not in ("?", "*") else f"[{_metavar(action)}]")
            continue
        flag = max(action.option_strings, key=len)
        text = flag if action.nargs == 0 else f"{flag} {_metavar(action)}"
        parts.append(text if action.required else f"[{text}]")
    return " ".join(parts)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    return parser._get_formatter()._expand_help(action)


def command_failures(module: Any) -> list[str]:
    """The messages of the `CommandError`s a command raises ({…} stands for a value)."""
    tree = ast.parse(inspect.getsource(module))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Raise)
            and isinstance(node.exc, ast.Call)
            and getattr(node.exc.func, "id", "") == "CommandError"
            and node.exc.args
        ):
            found.append((node.lineno, message_of(node.exc.args[0])))
    return [message for _, message in sorted(found)]


def message_of(node: ast.expr) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(str(part.value) if isinstance(part, ast.Constant) else "…" for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return message_of(node.left) + message_of(node.right)
    return "… (the reason, as the service gives it)"


def commands_block() -> str:
    from django.core.management import load_command_class

    out = []
    missing = []
    for name, app in project_commands():
        command = load_command_class(app, name)
        parser = command.create_parser("manage.py", name)
        actions = [a for a in parser._actions if a.dest not in DJANGO_OPTIONS]
        out.append(f"### {name}\n")
        out.append(f"```\n{usage_line(name, actions)}\n```\n")
        out.append(" ".join(str(command.help).split()) + "\n")
        if actions:
            rows = []
            for action in actions:
                flag = ", ".join(action.option_strings) or action.dest
                default = "" if action.default in (None, False, "", argparse.SUPPRESS) else f"`{action.default}`"
                required = "required" if action.required or not action.option_strings else default or "optional"
                rows.append((f"`{flag}`", required, _help(parser, action)))
            out.append(table(("argument", "required / default", "meaning"), rows) + "\n")
        if name not in COMMAND_OUTPUT:
            missing.append(name)
        out.append(f"*Prints:* {COMMAND_OUTPUT.get(name, '')}\n")
        failures = command_failures(importlib.import_module(type(command).__module__))
        if failures:
            listed = "; ".join(f"“{cell(message)}”" for message in failures)
            out.append(f"*Fails* (exit status 1, the message on stderr): {listed}\n")
    unknown = sorted(set(COMMAND_OUTPUT) - {name for name, _ in project_commands()})
    if missing or unknown:
        raise SystemExit(
            f"docs/build_api_md.py COMMAND_OUTPUT: add a line for {missing or 'nothing'}; remove {unknown or 'nothing'}"
        )
    return "\n".join(out)


# --- Environment variables ------------------------------------------------------------------


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
            f"docs/build_api_md.py ENVIRONMENT: describe {missing or 'nothing'}; "
            f"remove {unknown or 'nothing'} (no longer read by the settings)"
        )
    for name, default in found.items():
        meaning, written = ENVIRONMENT[name]
        shown = written or default
        if shown is None:
            raise SystemExit(f"docs/build_api_md.py ENVIRONMENT: {name}'s default is computed; write it out")
        rows.append((f"`{name}`", shown, meaning))
    return table(("variable", "default", "meaning"), rows)


# --- Command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/api.md is out of date")
    options = parser.parse_args(argv)
    setup_django()
    current = API_MD.read_text()
    fresh = render(current)
    if options.check:
        if fresh != current:
            print("docs/api.md is out of date: run .venv/bin/python docs/build_api_md.py", file=sys.stderr)
            return 1
        return 0
    API_MD.write_text(fresh)
    print("docs/api.md " + ("rewritten" if fresh != current else "already up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
