"""The proxy's memory stays flat whatever is sent: a 300 MB body, with or without
Content-Length, is refused with 413 while the real server process (uvicorn on the
site's ASGI application, in a process of its own) grows by less than 50 MB."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tests.proxy.conftest import KEY
from usage.models import UsageRecord
from usage.services import create_account

ROOT = Path(__file__).resolve().parents[2]
BODY_BYTES = 300 * 1024 * 1024
CHUNK = b" " * (1024 * 1024)
GROWTH_LIMIT_BYTES = 50 * 1024 * 1024


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(pid: int, field: str) -> int:
    """A memory figure of /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.fixture
def server(transactional_db, simulator, tmp_path) -> Iterator[tuple[str, int]]:
    sim_server, _ = simulator
    create_account(name="Acme", slug="acme", base_url=f"{sim_server.url}/v1")
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")} | {
        "DATABASE_URL": _database_url(),
        "TOKI_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "memory-test-secret-key-not-for-production-use",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "toki_dashboard.asgi:application", "--port", str(port), "--no-access-log"],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/proxy/acme/v1", process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _body() -> Iterator[bytes]:
    for _ in range(BODY_BYTES // len(CHUNK)):
        yield CHUNK


def test_a_300_mb_body_is_refused_with_413_and_the_server_grows_by_less_than_50_mb(server):
    url, pid = server
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    with httpx.Client(timeout=120) as client:
        # Warm up: the first call loads what every later call uses.
        warm = client.post(f"{url}/chat/completions", json={"model": "sim-gpt", "messages": []}, headers=headers)
        assert warm.status_code == 400
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
        before = _status(pid, "VmRSS")

        chunked = client.post(f"{url}/chat/completions", content=_body(), headers=headers)
        declared = client.post(
            f"{url}/chat/completions", content=_body(), headers=headers | {"Content-Length": str(BODY_BYTES)}
        )
        peak = _status(pid, "VmHWM")

    for answer in (chunked, declared):
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "request_too_large"
    print(f"server RSS {before / 2**20:.0f} MB, peak while refusing {peak / 2**20:.0f} MB")
    assert peak - before < GROWTH_LIMIT_BYTES, f"grew by {(peak - before) / 2**20:.0f} MB"
    # The warm-up call is the only one recorded; the refused ones left nothing.
    deadline = time.monotonic() + 10
    while UsageRecord.objects.count() < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert UsageRecord.objects.count() == 1
