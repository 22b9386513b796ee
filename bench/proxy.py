"""Latency the logging proxy adds, and its throughput (bench/README.md).

    .venv/bin/python bench/proxy.py [--database-url URL] [--quick]

Starts two servers on this machine, each a separate process:
- the upstream simulator (usage.proxy.simulator, uvicorn, one process);
- the site's ASGI application (toki_dashboard.asgi:application, uvicorn, one worker
  process, production settings: DEBUG off) with an account whose base URL is the
  simulator. Every proxied call is recorded in the database (SQLite in a temporary
  directory unless --database-url names another, which must exist and be disposable).

The load comes from this process: keep-alive HTTP/1.1 connections on asyncio and
httptools, one per concurrent caller, each sending its next request when the last
answer has ended. The same calls go to the simulator directly and through the proxy;
"added" is the difference of the two at the same percentile.

Scenarios (the simulator's X-Sim-Delay / X-Sim-Chunk-Delay headers set its pace):
- non-streamed chat completions at 1 and at 50 concurrent callers, the upstream
  answering after --delay (a short model call), and with no delay at all (then the
  callers queue behind whatever is slowest, which shows capacity rather than cost);
- streamed chat completions (24 chunks --chunk-delay apart): time to the first chunk
  and to the end of the stream, at 1 and 50 concurrent callers;
- throughput: non-streamed calls through the proxy as fast as it answers them.

Afterwards every proxied call must have left exactly one record.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httptools

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
KEY = "sk-bench-0123456789abcdefghij"
SYSTEM = (
    "You are a helpful assistant for an engineering team. Answer briefly and precisely, cite the function names "
    "you refer to, and prefer short code examples over long explanations. " * 3
)
QUESTION = "How do I stream a chat completion with the OpenAI Python SDK and count the tokens it used? " * 4


def body(stream: bool) -> bytes:
    request = {
        "model": "sim-gpt",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        "max_tokens": 24,
        "stream": stream,
    }
    return json.dumps(request).encode()


# --- A lean load generator ---------------------------------------------------------------


@dataclass
class Timing:
    first: float  # seconds to the first byte of the body
    total: float  # seconds to the end of the response


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, path: str, payload: bytes, headers: dict[str, str]) -> Timing:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(payload)}\r\nAuthorization: Bearer {KEY}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        started = time.perf_counter()
        self.writer.write(head.encode() + b"\r\n" + payload)
        state = {"first": 0.0, "done": False, "status": 0}

        class Callbacks:
            def on_body(self, data: bytes) -> None:
                if not state["first"]:
                    state["first"] = time.perf_counter()

            def on_message_complete(self) -> None:
                state["done"] = True

        parser = httptools.HttpResponseParser(Callbacks())
        while not state["done"]:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            parser.feed_data(data)
        if parser.get_status_code() != 200:
            raise RuntimeError(f"HTTP {parser.get_status_code()} from {path}")
        if not parser.should_keep_alive():
            self.writer.close()
            self.writer = None
        ended = time.perf_counter()
        return Timing(first=(state["first"] or ended) - started, total=ended - started)


async def load(
    port: int, path: str, payload: bytes, headers: dict[str, str], callers: int, total: int, spread: float = 0.0
) -> list[Timing]:
    """`total` calls from `callers` concurrent callers. With `spread`, caller i starts
    i·spread/callers seconds late, so that calls are in flight all the time rather than
    in lockstep waves (with a fixed upstream delay, waves would never break up)."""
    timings: list[Timing] = []
    remaining = [total]

    async def caller(index: int) -> None:
        await asyncio.sleep(index * spread / callers)
        connection = Connection(port)
        while remaining[0] > 0:
            remaining[0] -= 1
            timings.append(await connection.request(path, payload, headers))

    await asyncio.gather(*(caller(i) for i in range(callers)))
    return timings


async def throughput(port: int, path: str, payload: bytes, callers: int, seconds: float) -> tuple[float, int]:
    done = [0]
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        connection = Connection(port)
        while time.perf_counter() < deadline:
            await connection.request(path, payload, {})
            done[0] += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return done[0] / (time.perf_counter() - started), done[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


# --- Servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def servers(database_url: str | None) -> Iterator[tuple[int, int, dict[str, str]]]:
    var = Path(tempfile.mkdtemp(prefix="toki-bench-proxy-"))
    env = os.environ | {
        "TOKI_VAR_DIR": str(var),
        "DATABASE_URL": database_url or f"sqlite:///{var / 'bench.sqlite3'}",
        "SECRET_KEY": "bench-secret-key-not-for-production-use-0123456789",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "FIELD_ENCRYPTION_KEY": "bench",
        # The simulator's pace headers are not on the proxy's allow-list of forwarded headers.
        "TOKI_PROXY_FORWARD_HEADERS": "X-Sim-Delay,X-Sim-Chunk-Delay",
    }
    env.pop("REDIS_URL", None)  # embedded mode: no broker server to run
    sim_port, proxy_port = free_port(), free_port()
    manage = [PYTHON, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    subprocess.run(
        [
            *manage,
            "create_account",
            "--name",
            "Bench",
            "--slug",
            "bench",
            "--base-url",
            f"http://127.0.0.1:{sim_port}/v1",
        ],
        env=env,
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    simulator = subprocess.Popen(
        [PYTHON, "-c", f"from usage.proxy.simulator import run; run(port={sim_port}, keep_log=False)"],
        env=env,
        cwd=ROOT,
    )
    proxy = subprocess.Popen(
        [PYTHON, "-m", "uvicorn", "toki_dashboard.asgi:application", "--port", str(proxy_port)]
        + ["--no-access-log", "--log-level", "warning", "--lifespan", "on"],
        env=env,
        cwd=ROOT,
    )
    try:
        wait_for_port(sim_port, simulator)
        wait_for_port(proxy_port, proxy)
        yield sim_port, proxy_port, env
    finally:
        proxy.terminate()  # SIGTERM: the lifespan shutdown writes what is still queued
        simulator.terminate()
        proxy.wait(timeout=60)
        simulator.wait(timeout=60)
        recorded = count_records(env)
        print(f"records the proxy wrote: {recorded}")
        if database_url is None:
            shutil.rmtree(var, ignore_errors=True)


def count_records(env: dict[str, str]) -> int:
    code = "from usage.models import UsageRecord; print(UsageRecord.objects.filter(source='proxy').count())"
    out = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "shell", "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    return int(out.stdout.strip().splitlines()[-1])


# --- Scenarios -------------------------------------------------------------------------------


def report(label: str, direct: list[Timing], proxied: list[Timing], field: str) -> None:
    d = [getattr(t, field) * 1000 for t in direct]
    p = [getattr(t, field) * 1000 for t in proxied]
    d50, d99, p50, p99 = percentile(d, 0.5), percentile(d, 0.99), percentile(p, 0.5), percentile(p, 0.99)
    print(
        f"{label:44} direct p50 {d50:7.2f} p99 {d99:7.2f} | proxy p50 {p50:7.2f} p99 {p99:7.2f}"
        f" | added p50 {p50 - d50:6.2f} p99 {p99 - d99:6.2f} ms"
    )


async def run(args: argparse.Namespace, sim_port: int, proxy_port: int) -> int:
    direct_path, proxy_path = "/v1/chat/completions", "/proxy/v1/chat/completions"
    calls = 0

    async def both(
        stream: bool, callers: int, total: int, headers: dict[str, str], spread: float = 0.0
    ) -> tuple[list[Timing], list[Timing]]:
        nonlocal calls
        payload = body(stream)
        await load(sim_port, direct_path, payload, headers, callers, min(total, 200))  # warm-up
        await load(proxy_port, proxy_path, payload, headers, callers, min(total, 200))
        direct = await load(sim_port, direct_path, payload, headers, callers, total, spread)
        proxied = await load(proxy_port, proxy_path, payload, headers, callers, total, spread)
        calls += min(total, 200) + total
        return direct, proxied

    scale = 0.2 if args.quick else 1.0
    delay = {"X-Sim-Delay": str(args.delay)}
    pace = {"X-Sim-Chunk-Delay": str(args.chunk_delay)}
    print("time in ms; each line: the same calls directly to the simulator and through the proxy")
    for callers, total in ((1, 300), (50, 3000)):
        d, p = await both(False, callers, int(total * scale), delay, args.delay)
        report(f"non-streamed, {callers:2} caller(s), upstream {args.delay * 1000:.0f} ms", d, p, "total")
    d, p = await both(False, 50, int(3000 * scale), {})
    report("non-streamed, 50 callers, no upstream delay", d, p, "total")
    for callers, total in ((1, 100), (50, 1000)):
        d, p = await both(True, callers, int(total * scale), pace, args.chunk_delay * 25)
        report(f"streamed, {callers:2} caller(s), first chunk", d, p, "first")
        report(f"streamed, {callers:2} caller(s), whole stream", d, p, "total")

    payload = body(False)
    seconds = 5 if args.quick else 15
    direct_rate, _ = await throughput(sim_port, direct_path, payload, 50, seconds / 3)
    proxy_rate, proxied = await throughput(proxy_port, proxy_path, payload, 50, seconds)
    calls += proxied
    print(
        f"throughput, non-streamed, 50 callers: proxy {proxy_rate:.0f} req/s "
        f"(simulator alone {direct_rate:.0f} req/s, same machine)"
    )
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="an existing, disposable database (default: SQLite in a temp dir)")
    parser.add_argument("--delay", type=float, default=0.25, help="upstream answer time, seconds (default 0.25)")
    parser.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between streamed chunks")
    parser.add_argument("--quick", action="store_true", help="a fifth of the calls, for a smoke run")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average before {os.getloadavg()[0]:.2f}; database "
        f"{'PostgreSQL' if (args.database_url or '').startswith('postgres') else 'SQLite'}"
    )
    with servers(args.database_url) as (sim_port, proxy_port, _env):
        started = time.perf_counter()
        calls = asyncio.run(run(args, sim_port, proxy_port))
        print(
            f"load average after {os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s; {calls} proxied calls"
        )


if __name__ == "__main__":
    main()
