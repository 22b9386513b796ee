"""Real servers for the proxy tests: the simulator and the site's ASGI application, each
served by uvicorn on a localhost port in a thread of the test process.

pytest-django's live_server is WSGI and would buffer streams, so uvicorn is started
here. The proxy's server uses the test database (transactional_db: what the test
creates is committed, so the server's threads see it).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from django.db import connections

from toki_dashboard.asgi import application
from usage.models import Account, UsageRecord
from usage.proxy.simulator import Simulator
from usage.services import create_account

DEADLINE_SECONDS = 15
KEY = "sk-test-0123456789abcdefWXYZ"


class ServerThread:
    """uvicorn serving `app` on 127.0.0.1 in a thread, with the lifespan protocol on."""

    def __init__(self, app: Any) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.loop = self.server.servers[0].get_loop() if self.server.servers else None
        return self

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the server's event loop and wait for its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=DEADLINE_SECONDS)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=DEADLINE_SECONDS)
        self.socket.close()


@pytest.fixture(scope="session")
def simulator() -> Iterator[tuple[ServerThread, Simulator]]:
    sim = Simulator(slow_seconds=5.0)
    server = ServerThread(sim).start()
    yield server, sim
    server.stop()


@dataclass
class Proxy:
    server: ServerThread
    account: Account
    upstream: str  # the simulator's base URL, for calling it directly
    sim: Simulator

    @property
    def url(self) -> str:
        return f"{self.server.url}/proxy/v1"

    def url_for(self, slug: str) -> str:
        return f"{self.server.url}/proxy/{slug}/v1"

    def flush(self) -> None:
        """Wait until every finished call has been written (or spooled)."""
        runtime = application.proxy._runtime  # type: ignore[attr-defined]
        if runtime is not None:
            self.server.run(runtime.recorder.flush())

    def records(self) -> list[UsageRecord]:
        self.flush()
        return list(UsageRecord.objects.order_by("id"))


def wait_until(predicate: Callable[[], Any], *, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def proxy(transactional_db, simulator, settings, tmp_path) -> Iterator[Proxy]:
    server, sim = simulator
    settings.TOKI_PROXY_SPOOL_DIR = tmp_path / "spool"
    sim.log.clear()
    account = create_account(name="Acme", slug="acme", base_url=f"{server.url}/v1")
    proxy_server = ServerThread(application).start()
    try:
        yield Proxy(proxy_server, account, f"{server.url}/v1", sim)
    finally:
        proxy_server.stop()  # the lifespan shutdown writes what is queued and closes connections
        connections.close_all()
