"""A newcomer's path, in a fresh clone: what `make run` prepares, then every `manage.py` command
the README shows, run the way a second terminal runs it (a fresh environment, nothing exported),
and the README's first API call with curl against the clone's own web server.

No command may fail for want of settings (a SECRET_KEY traceback): the settings read the
var/development.env that `make run` writes. Commands the README shows with placeholders (…,
[--option], SLUG), or that reach the network or keep running, are asked for their --help, which
loads the same settings; the others run as written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
PLACEHOLDERS = ("…", "[", "<", "&", "SLUG", "USERNAME", "PATH", " N")
# Reach a provider or keep running: asked for --help only.
NOT_RUN = {"simulate_upstream", "sync_models", "sync_provider", "sync_prices", "runserver", "shell", "dbshell"}
SH_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
INLINE = re.compile(r"`(?:\.venv/bin/python |python )?manage\.py ([a-z_]+)[^`]*`")


def fresh_env() -> dict[str, str]:
    """What a new terminal has: no DEBUG, SECRET_KEY or anything else exported."""
    return {"PATH": os.environ["PATH"], "HOME": str(Path.home()), "LANG": "C.UTF-8"}


def shell(clone: Path, line: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line], cwd=clone, env=fresh_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def readme_commands() -> tuple[list[str], set[str]]:
    """Lines of the README's sh blocks that run manage.py, and every command named inline."""
    text = README.read_text()
    lines = [
        line.strip()
        for block in SH_BLOCK.findall(text)
        for line in block.replace("\\\n", " ").splitlines()
        if "manage.py" in line and "docker compose" not in line
    ]
    named = set(INLINE.findall(text)) | {re.search(r"manage\.py ([a-z_]+)", line).group(1) for line in lines}
    return lines, named


def command_of(line: str) -> str:
    return re.search(r"manage\.py ([a-z_]+)", line).group(1)


def runnable(line: str) -> bool:
    return not any(mark in line for mark in PLACEHOLDERS) and command_of(line) not in NOT_RUN


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of this checkout's HEAD, prepared as `make run` prepares it (without the
    demo data, which takes a while: the demo account alone)."""
    where = tmp_path_factory.mktemp("newcomer") / "toki"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(where)], check=True, capture_output=True)
    (where / ".venv").symlink_to(REPO_ROOT / ".venv")  # the installed environment, as `make run` makes one
    for step in (
        "make -s dev-env",
        "make -s server-env PORT=8111",
        ".venv/bin/python manage.py migrate --noinput -v0",
        ".venv/bin/python manage.py create_account --name 'Acme AI' --slug acme --currency USD",
    ):
        done = shell(where, step)
        assert done.returncode == 0, (step, done.stderr)
    return where


def test_make_run_leaves_development_settings_that_every_process_reads(clone: Path):
    assert "SECRET_KEY=" in (clone / "var" / "development.env").read_text()
    shown = shell(
        clone,
        ".venv/bin/python manage.py shell -v0 -c 'from django.conf import settings; print(settings.DASHBOARD_URL)'",
    )
    assert shown.stdout.strip() == "http://127.0.0.1:8111"  # the port make run serves: alert email links


def test_every_manage_py_command_of_the_readme_runs_in_a_second_terminal_without_a_secret_key_error(clone: Path):
    lines, named = readme_commands()
    assert len(named) >= 10 and any(command_of(line) == "create_api_token" for line in lines)
    ran: list[str] = []
    failures: list[str] = []
    for line in lines:
        if not runnable(line):
            continue
        result = shell(clone, line.split("#", 1)[0] if " #" in line else line)
        ran.append(command_of(line))
        output = result.stdout + result.stderr
        if "SECRET_KEY" in output or "Traceback" in output:
            failures.append(f"{line}\n{output[-2000:]}")
    for command in sorted(named):
        result = shell(clone, f".venv/bin/python manage.py {shlex.quote(command)} --help")
        output = result.stdout + result.stderr
        if result.returncode != 0 or "SECRET_KEY" in output or "Traceback" in output:
            failures.append(f"manage.py {command} --help\n{output[-2000:]}")

    print(f"ran {len(ran)} README lines as written ({', '.join(sorted(set(ran)))}); {len(named)} commands' --help")
    assert "create_api_token" in ran
    assert failures == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def web_server(clone: Path) -> Iterator[int]:
    """The clone's web server, started as the Procfile starts it."""
    port = free_port()
    server = subprocess.Popen(
        [".venv/bin/uvicorn", "toki_dashboard.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        cwd=clone,
        env=fresh_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.3)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_readme_first_api_call_works_with_curl(clone: Path, web_server: int):
    text = README.read_text()
    section = text[text.index("### Your first API call") :]
    block = SH_BLOCK.findall(section)[1]  # the token, then the curl calls
    script = block.replace("127.0.0.1:8000", f"127.0.0.1:{web_server}")
    script = script.replace("curl -s ", "curl -s -w '\\n' ")  # one answer per line

    result = shell(clone, "set -e\n" + script, timeout=120)

    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(answers) == 3, result.stdout
    balance, summary, stored = answers
    assert "detail" not in balance and "detail" not in summary, answers
    assert stored["accepted"] == 1 and stored["rejected"] == [], stored
