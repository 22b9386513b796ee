"""A web process serves its requests on the PostgreSQL sessions of a small pool.

Django's ASGI handler runs every request in a thread of its own. With a connection kept per
thread, each request opened a PostgreSQL session of its own (and its staging tables), left
open until the collector freed the finished thread; a busy web process could hold dozens.
Pooled (toki_dashboard/config.py, database_from_url), a request borrows a session and gives
it back when it ends, and a web process never holds more than DATABASE_POOL_SIZE.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from tests.test_many_processes import BIN, ROOT, database_url, free_port
from tests.usage.test_sql_bulk import raw_record
from toki_dashboard.roles import Role
from usage.services import create_account, create_api_token

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the pool is PostgreSQL's; SQLite opens a file, not a server session"
)

POOL_SIZE = 4
START_SECONDS = 60


def sessions_opened() -> int:
    """Sessions ever opened on the test database, by any process (PostgreSQL counts them at start)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


@pytest.fixture
def web_process(transactional_db, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}},
        "DATABASE_URL": database_url(),
        "DATABASE_POOL_SIZE": str(POOL_SIZE),
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "TOKI_VAR_DIR": str(tmp_path / "var"),
        "PROMETHEUS_MULTIPROC_DIR": "",
        "LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "web.log"
    # As a host does after a deploy: pages link their static files through the manifest.
    subprocess.run(
        [str(BIN / "python"), "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=environment, check=True
    )
    process = subprocess.Popen(
        [str(BIN / "uvicorn"), "toki_dashboard.asgi:application", "--port", str(port), "--no-access-log"],
        cwd=ROOT,
        env=environment,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                httpx.get(f"{url}/login/", timeout=2)
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def refused_connections() -> Iterator[None]:
    """The test database refuses new sessions and loses all but this test's own, as in an outage."""
    name = connection.settings_dict["NAME"]
    # From the server's maintenance database: a database cannot refuse its own sessions.
    with psycopg.connect(database_url().rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                [name, connection.connection.info.backend_pid],
            )
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def test_a_web_process_serves_many_requests_on_the_few_sessions_of_its_pool(web_process: str):
    account = create_account(name="Pooled", slug="pooled")
    _, token = create_api_token(account=account, name="reader", scopes=["read"])
    headers = {"Authorization": f"Bearer {token}"}
    before = sessions_opened()

    with httpx.Client(base_url=web_process, headers=headers, timeout=30) as client:
        one_by_one = [client.get("/api/v1/balance").status_code for _ in range(30)]
    with ThreadPoolExecutor(max_workers=POOL_SIZE + 2) as callers:  # more callers than the pool lends

        def read(_: int) -> int:
            return httpx.get(f"{web_process}/api/v1/balance", headers=headers, timeout=30).status_code

        at_once = list(callers.map(read, range(60)))

    assert set(one_by_one) == set(at_once) == {200}
    assert sessions_opened() - before <= POOL_SIZE


def test_while_postgresql_refuses_connections_the_ingestion_api_answers_503_and_loses_nothing(web_process: str):
    account = create_account(name="Outage", slug="outage")
    _, token = create_api_token(account=account, name="ingest", scopes=["ingest"])
    headers = {"Authorization": f"Bearer {token}"}
    batch = {"records": [raw_record(i) for i in range(3)]}

    with refused_connections():
        during = httpx.post(f"{web_process}/api/v1/usage", json=batch, headers=headers, timeout=60)
    after = httpx.post(f"{web_process}/api/v1/usage", json=batch, headers=headers, timeout=60)

    assert during.status_code == 503, during.text
    assert during.json() == {"detail": "The database is unavailable. Try again in a few seconds."}
    assert int(during.headers["Retry-After"]) > 0
    assert after.status_code == 200 and after.json()["accepted"] == 3  # stored once, when it could be


def test_while_postgresql_refuses_connections_a_page_answers_503_and_asks_to_retry(web_process: str, make_user: Any):
    user = make_user("fiona", Role.FINANCE)
    client = Client()
    client.force_login(user)
    cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
    before = httpx.get(f"{web_process}/", cookies=cookies, timeout=60)

    with refused_connections():
        during = httpx.get(f"{web_process}/", cookies=cookies, timeout=60)

    assert before.status_code == 200
    assert during.status_code == 503
    assert "The database is unavailable. Try again in a few seconds." in during.text
    assert int(during.headers["Retry-After"]) > 0
