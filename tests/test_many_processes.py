"""More than one machine: two web processes and two Celery workers share one PostgreSQL and
one Redis, as separate hosts would, under concurrent ingestion (every batch sent twice, to
different web processes at once), proxied calls through the official SDK and allocation
refreshes asked for from everywhere. Afterwards nothing is counted twice, the rollups equal a
recount, the allocations equal a full recompute and every alert transition was told once.

Each web process has its own var folder (its proxy spool, its metrics), as a host would.
The processes run the production settings (`tests/cluster_settings.py` only shortens the
debounce delays and names this run's queue), started the way the README's multi-host
section says: uvicorn for the web, `celery worker` for the workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from openai import OpenAI

from billing.audit import Actor
from billing.budgets.services import BudgetData, create_budget
from billing.models import (
    AlertNotification,
    Allocation,
    ChannelKind,
    DailyPaid,
    DeliveryStatus,
    PlanExpiry,
    WalletEntry,
)
from billing.notify.channels import create_channel
from billing.recompute import refresh_allocations
from billing.tasks import refresh_allocations as refresh_allocations_task
from tests.billing.conftest import buy, record, top_up
from tests.billing.test_alerts import Sink, smtp_server  # noqa: F401  (a real SMTP server on localhost)
from tests.members import members_with_emails
from tests.proxy.conftest import ServerThread
from toki_dashboard.celery import app
from usage import rollups
from usage.models import Account, UsageRecord
from usage.proxy.simulator import Simulator
from usage.services import create_account, create_api_token

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql" or not settings.REDIS_URL,
    reason="several hosts share PostgreSQL and Redis: SQLite and the embedded broker are for one machine "
    "(CI runs this test with DATABASE_URL and REDIS_URL set)",
)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START_SECONDS = 60
SETTLE_SECONDS = 90
INGEST_THREADS, BATCHES_PER_THREAD, RECORDS_PER_BATCH = 6, 8, 50
PROXY_CALLS = 80
COST_PER_RECORD = Decimal("0.005")  # 2,400 records: 12 USD against a 10 USD budget
KEY = "sk-cluster-0123456789abcdefWXYZ"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Cluster:
    web: list[str]  # base URLs of the web processes
    processes: dict[str, subprocess.Popen]
    logs: Path

    def stop_web(self) -> None:
        """SIGTERM, as an orchestrator stops a host: uvicorn's shutdown writes what the proxy still holds."""
        for name, process in self.processes.items():
            if name.startswith("web"):
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            if name.startswith("web"):
                # uvicorn ends a graceful shutdown by re-raising the signal it got.
                assert process.wait(timeout=30) in (0, -signal.SIGTERM), self.log(name)
                assert "Application shutdown complete" in self.log(name), self.log(name)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()[-4000:]


def _environment(tmp_path: Path, name: str, smtp_port: int) -> dict[str, str]:
    var = tmp_path / name
    (var / "staticfiles").mkdir(parents=True)  # STATIC_ROOT: collectstatic's folder on a host
    return {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DJANGO_SETTINGS_MODULE": "tests.cluster_settings",
        "TOKI_TEST_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEY": settings.FIELD_ENCRYPTION_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "ALERT_DEFAULT_RULES": "false",
        "TOKI_VAR_DIR": str(var),
        "PROMETHEUS_MULTIPROC_DIR": str(var / "metrics"),
        "LOG_LEVEL": "WARNING",
    }


def _wait_for(condition: Callable[[], Any], what: str, seconds: float, cluster: Cluster) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    logs = "\n".join(f"--- {name}\n{cluster.log(name)}" for name in cluster.processes)
    raise AssertionError(f"{what} within {seconds:.0f} s\n{logs}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/login/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def cluster(transactional_db, tmp_path: Path, smtp_server: Sink) -> Iterator[Cluster]:  # noqa: F811
    smtp_port = int(settings.EMAIL_PORT)
    processes: dict[str, subprocess.Popen] = {}
    web: list[str] = []
    try:
        for n in (1, 2):
            port = free_port()
            name = f"web{n}"
            processes[name] = subprocess.Popen(
                [
                    str(BIN / "uvicorn"),
                    "toki_dashboard.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-access-log",
                ],
                cwd=ROOT,
                env=_environment(tmp_path, name, smtp_port),
                stdout=(tmp_path / f"{name}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
            web.append(f"http://127.0.0.1:{port}")
        for n in (1, 2):
            name = f"worker{n}"
            processes[name] = subprocess.Popen(
                [
                    str(BIN / "celery"),
                    "-A",
                    "toki_dashboard",
                    "worker",
                    "--concurrency",
                    "2",
                    "--loglevel",
                    "WARNING",
                    "-n",
                    f"{name}-{os.getpid()}@%h",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=ROOT,
                env=_environment(tmp_path, name, smtp_port),
                stdout=(tmp_path / f"{name}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        cluster = Cluster(web=web, processes=processes, logs=tmp_path)
        for url in web:
            _wait_for(lambda url=url: _answers(url), f"{url} answering", START_SECONDS, cluster)
        workers = [f"worker{n}-{os.getpid()}@{socket.gethostname()}" for n in (1, 2)]
        _wait_for(
            lambda: len(app.control.ping(destination=workers, timeout=1)) == 2, "both workers", START_SECONDS, cluster
        )
        yield cluster
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _idle(workers: list[str]) -> bool:
    """Nothing queued, nothing running, nothing held back for later (debounced tasks wait as ETA tasks)."""
    with app.connection_for_read() as conn:
        queued = conn.default_channel.client.llen(settings.CELERY_TASK_DEFAULT_QUEUE)
    inspect = app.control.inspect(destination=workers, timeout=1)
    busy = [inspect.active(), inspect.reserved(), inspect.scheduled()]
    return queued == 0 and all(answer is not None and not any(answer.values()) for answer in busy)


def _settled(workers: list[str]) -> bool:
    # Idle twice, a debounce delay apart: a task that enqueues another is seen in between.
    if not _idle(workers):
        return False
    time.sleep(2.5)
    return _idle(workers)


def _allocation_state(account: Account) -> tuple[list, list, list, list]:
    return (
        sorted(
            Allocation.objects.filter(account=account).values_list("record_id", "purchase_id", "tokens", "amount"),
            key=lambda r: (r[0], r[1] is None, r[1] or 0),
        ),
        sorted(PlanExpiry.objects.filter(account=account).values_list("purchase_id", "tokens", "expired_at")),
        sorted(WalletEntry.objects.filter(account=account).values_list("kind", "usage_day", "amount")),
        sorted(
            DailyPaid.objects.filter(account=account).values_list(
                "day", "model", "api_key_id", "team", "currency", *DailyPaid.FIGURES
            )
        ),
    )


def test_two_web_processes_and_two_workers_count_everything_once(cluster: Cluster, smtp_server: Sink):  # noqa: F811
    now = timezone.now()
    upstream = ServerThread(Simulator(slow_seconds=5.0)).start()
    try:
        account = create_account(name="Acme", slug="acme", base_url=f"{upstream.url}/v1")
        members_with_emails(account, ["finance@example.com"])
        create_channel(account, kind=ChannelKind.EMAIL, target="finance@example.com")
        create_budget(
            account, BudgetData(name="Monthly", amount=Decimal(10), measure="usage_value"), Actor.system("tests")
        )
        buy(account, "plan", 200_000, now - timedelta(days=2), now + timedelta(days=28))
        top_up(account, "opening", "5", now - timedelta(days=2))
        _, token = create_api_token(account=account, name="ingest", scopes=["ingest"])

        batches = [
            [
                record(
                    f"t{thread}-b{batch}-r{row}",
                    now - timedelta(minutes=1 + row),
                    "gpt-4o-mini",
                    300,
                    40,
                    str(COST_PER_RECORD),
                    metadata={"team": f"team-{thread % 3}"},
                )
                for row in range(RECORDS_PER_BATCH)
            ]
            for thread in range(INGEST_THREADS)
            for batch in range(BATCHES_PER_THREAD)
        ]
        answers: list[dict] = []
        answers_lock = threading.Lock()

        def send(batch: list[dict], url: str) -> None:
            response = httpx.post(
                f"{url}/api/v1/usage", json={"records": batch}, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            assert response.status_code == 200, response.text
            with answers_lock:
                answers.append(response.json())

        def call_through_proxy(n: int) -> None:
            client = OpenAI(base_url=f"{cluster.web[n % 2]}/proxy/acme/v1", api_key=KEY, max_retries=0)
            reply = client.chat.completions.create(model="sim-gpt", messages=[{"role": "user", "content": f"hi {n}"}])
            assert reply.choices

        with ThreadPoolExecutor(max_workers=12) as pool:
            futures = []
            for n, batch in enumerate(batches):
                # The same batch to both web processes at once: a client retrying on another host.
                futures.append(pool.submit(send, batch, cluster.web[n % 2]))
                futures.append(pool.submit(send, batch, cluster.web[(n + 1) % 2]))
                if n % 4 == 0:
                    futures.append(pool.submit(refresh_allocations_task.delay, account.pk))
            futures += [pool.submit(call_through_proxy, n) for n in range(PROXY_CALLS)]
            for future in futures:
                future.result()

        cluster.stop_web()
        workers = [f"worker{n}-{os.getpid()}@{socket.gethostname()}" for n in (1, 2)]
        _wait_for(lambda: _settled(workers), "the workers to finish", SETTLE_SECONDS, cluster)
    finally:
        upstream.stop()

    for name in ("web1", "web2"):  # work a web process asked for after a commit was really queued
        assert "in on_commit()" not in (cluster.logs / f"{name}.log").read_text(), cluster.log(name)

    sent = len(batches) * RECORDS_PER_BATCH
    assert sum(a["accepted"] for a in answers) == sent
    assert sum(a["duplicates"] for a in answers) == sent
    assert not any(a["conflicts"] or a["rejected"] for a in answers)
    assert UsageRecord.objects.filter(account=account, source="api").count() == sent
    assert UsageRecord.objects.filter(account=account, source="proxy").count() == PROXY_CALLS
    twice = UsageRecord.objects.values("account", "request_id").annotate(n=Count("id")).filter(n__gt=1)
    assert list(twice) == []

    assert rollups.verify(account) == []

    settled = _allocation_state(account)
    allocated = Allocation.objects.filter(account=account).values("record_id").distinct().count()
    assert allocated == sent + PROXY_CALLS
    refresh_allocations(account, full=True)
    assert _allocation_state(account) == settled

    told = list(AlertNotification.objects.filter(account=account).order_by("created_at"))
    assert told, "the budget was exceeded and nobody was told"
    assert told[-1].severity == "critical"
    assert len({(n.episode_id, n.kind, n.tier) for n in told}) == len(told)
    assert {d.status for n in told for d in n.deliveries.all()} == {DeliveryStatus.SENT}
    time.sleep(1)  # an email sent twice would have arrived by now
    assert len(smtp_server.envelopes) == len(told)
