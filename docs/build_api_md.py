"""Regenerate the reference parts of docs/api.md from the code.

    .venv/bin/python docs/build_api_md.py          # rewrite the generated blocks of docs/api.md
    .venv/bin/python docs/build_api_md.py --check  # exit 1 when docs/api.md is out of date

docs/api.md is prose written by hand around blocks marked `<!-- generated:NAME -->` …
`<!-- /generated:NAME -->`. Only those blocks are rewritten, each from its source of truth:

- `scopes`: the API token scopes (`usage.models.TokenScope`);
- `endpoints` and `schemas`: the OpenAPI document of `/api/v1` (`toki_dashboard.api.api`),
  with the token scope and session roles each endpoint accepts read from its auth objects;
- `proxy`: the proxy's recorded calls and header lists (`usage.proxy.measure`, `usage.proxy.hygiene`);
- `commands`: each management command of `usage` and `billing`, from the parser its `--help`
  prints, the `CommandError`s it raises (exit status 1) and one hand-written line on what it
  prints (COMMAND_OUTPUT in docs/api_reference/commands.py);
- `environment`: every variable `toki_dashboard/settings.py` reads, with its default as written
  there, and a hand-written meaning (ENVIRONMENT in docs/api_reference/environment.py).

`scopes` and `proxy` are built here, the others by a module of docs/api_reference/ each.

A new endpoint, option or command changes the blocks by itself; a new environment variable or
command without its line stops the build and says which. `tests/test_docs.py` fails
while docs/api.md differs from what this script writes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The project, and this script's own modules (docs/api_reference/) when it is loaded from elsewhere (the tests).
for _path in (str(ROOT), str(DOCS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from api_reference.commands import commands_block  # noqa: E402
from api_reference.environment import ENVIRONMENT, environment_block  # noqa: E402
from api_reference.markdown import table  # noqa: E402
from api_reference.openapi import endpoints_block, openapi, schemas_block  # noqa: E402

API_MD = DOCS / "api.md"
BLOCK = re.compile(r"(<!-- generated:(?P<name>[a-z]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)

__all__ = ["API_MD", "ENVIRONMENT", "environment_block", "main", "render"]


# --- Django -----------------------------------------------------------------------------


def setup_django() -> None:
    """Django with the test settings: they need no secret from the environment and write
    nothing under var/; nothing rendered here depends on them."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()


# --- Blocks -----------------------------------------------------------------------------


def render(text: str) -> str:
    """`text` (docs/api.md) with every generated block written afresh, in English whatever
    language the calling thread has active (labels such as the scopes' are translated)."""
    from django.utils import translation

    with translation.override("en"):
        return _render(text)


def _render(text: str) -> str:
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


def scopes_block() -> str:
    from usage.models import TokenScope

    return table(("scope", "allows"), [(f"`{value}`", label) for value, label in TokenScope.choices])


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
