"""The `commands` block: each management command of `usage` and `billing`, from the parser its
`--help` prints, the `CommandError`s it raises (exit status 1) and one hand-written line below
(COMMAND_OUTPUT) on what it prints."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
from typing import Any

from api_reference.markdown import cell, table

COMMAND_APPS = ("usage", "billing")

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
            f"docs/api_reference/commands.py COMMAND_OUTPUT: add a line for {missing or 'nothing'}; "
            f"remove {unknown or 'nothing'}"
        )
    return "\n".join(out)
