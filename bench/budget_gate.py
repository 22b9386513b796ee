"""What budget enforcement costs the logging proxy: added latency with enforcement on vs off.

    .venv/bin/python bench/budget_gate.py [--database-url URL] [--quick]

The servers of bench/proxy.py (the upstream simulator and the site's ASGI application, each
its own uvicorn process) with two accounts calling the same simulator:

- `bench`: no enforced budget (enforcement off: the gate state is empty);
- `guarded`: enforced, exhausted budgets on another team, another key and other models, so
  every call runs the whole check (the key's fingerprint, the body's model, every lookup)
  and is still forwarded.

The same calls go to both in alternating rounds, in the same run, so the machine's load
affects both alike; the difference of the two at p50 is what enforcement adds
(target ≤ 0.2 ms). The load average is printed before and after: on a busy machine, rerun.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy import PYTHON, ROOT, Timing, body, load, percentile, servers

GUARD = """
from datetime import timedelta
from decimal import Decimal
from django.utils import timezone
from billing.audit import Actor
from billing.budgets import gate
from billing.budgets.services import BudgetData, create_budget
from usage.models import Account
from usage.schemas import validate_records
from usage.services import create_account, record_usage

account = create_account(name="Guarded", slug="guarded", base_url=Account.objects.get(slug="bench").base_url)
valid, _ = validate_records([{
    "request_id": "spent", "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat(), "model": "other-model",
    "api_key": "name:other-key", "usage": {"prompt_tokens": 10, "completion_tokens": 10}, "metadata": {"team": "other"},
}])
record_usage(account, valid, source="api")
for name, scope, target in (("Other team", "team", "other"), ("Other key", "api_key", "other-key"),
                            ("Other models", "model", "other-*")):
    create_budget(account, BudgetData(name=name, amount=Decimal(1), scope=scope, target=target, measure="tokens",
                                      enforce=True), Actor.system("bench"))
state = gate.publish(account)
print(f"guarded: {len(state.blocks)} blocks")
"""


CHECK = """
import asyncio, json, time
from concurrent.futures import ThreadPoolExecutor
from usage.budget_gate import read
from usage.models import Account
from usage.proxy.budgets import BudgetGate

body = json.dumps({"model": "sim-gpt", "messages": [{"role": "user", "content": "x" * 1500}]}).encode()
off, on = Account.objects.get(slug="bench").pk, Account.objects.get(slug="guarded").pk
gate = BudgetGate(ThreadPoolExecutor(1))

async def per_call(account_id, n=20000):
    await gate.block(account_id, "Bearer sk-bench-0123456789abcdefghij", "search", body)  # reads the state once
    started = time.perf_counter()
    for _ in range(n):
        await gate.block(account_id, "Bearer sk-bench-0123456789abcdefghij", "search", body)
    return (time.perf_counter() - started) / n * 1e6

off_us, on_us = asyncio.run(per_call(off)), asyncio.run(per_call(on))
print(f"the check alone, per call: enforcement off {off_us:.1f} µs, on {on_us:.1f} µs")
"""


def shell(env: dict[str, str], code: str) -> None:
    """Run `code` in the servers' settings (manage.py shell) and print its last line."""
    out = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "shell", "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    print(out.stdout.strip().splitlines()[-1])


def summary(label: str, off: list[Timing], on: list[Timing]) -> float:
    a = [t.total * 1000 for t in off]
    b = [t.total * 1000 for t in on]
    a50, a99, b50, b99 = percentile(a, 0.5), percentile(a, 0.99), percentile(b, 0.5), percentile(b, 0.99)
    print(
        f"{label:30} off p50 {a50:6.2f} p99 {a99:6.2f} | on p50 {b50:6.2f} p99 {b99:6.2f}"
        f" | enforcement adds p50 {b50 - a50:+.3f} ms, p99 {b99 - a99:+.3f} ms ({len(a)} + {len(b)} calls)"
    )
    return b50 - a50


async def run(args: argparse.Namespace, proxy_port: int) -> list[float]:
    payload = body(False)
    headers = {"X-Toki-Team": "search"}  # not the blocked team: every call is forwarded
    scale = 0.25 if args.quick else 1.0
    added = []
    for callers, rounds, per_round, delay in ((1, 10, 60, 0.0), (50, 6, 500, args.delay)):
        paced = headers | ({"X-Sim-Delay": str(delay)} if delay else {})
        off: list[Timing] = []
        on: list[Timing] = []
        for path in ("/proxy/bench/v1/chat/completions", "/proxy/guarded/v1/chat/completions"):  # warm-up
            await load(proxy_port, path, payload, paced, callers, 100)
        for _ in range(max(2, int(rounds * scale))):
            off += await load(proxy_port, "/proxy/bench/v1/chat/completions", payload, paced, callers, per_round, delay)
            on += await load(
                proxy_port, "/proxy/guarded/v1/chat/completions", payload, paced, callers, per_round, delay
            )
        label = f"non-streamed, {callers:2} caller(s)" + (f", upstream {delay * 1000:.0f} ms" if delay else "")
        added.append(summary(label, off, on))
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="an existing, disposable database (default: SQLite in a temp dir)")
    parser.add_argument("--quick", action="store_true", help="a quarter of the calls, for a smoke run")
    parser.add_argument("--delay", type=float, default=0.1, help="upstream answer time at 50 callers (default 0.1 s)")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average before {os.getloadavg()[0]:.2f}"
    )
    with servers(args.database_url) as (_sim_port, proxy_port, env):
        shell(env, GUARD)
        shell(env, CHECK)
        time.sleep(2.5)  # the proxy re-reads gate states every TOKI_PROXY_BUDGET_REFRESH_SECONDS (2)
        started = time.perf_counter()
        added = asyncio.run(run(args, proxy_port))
        print(f"load average after {os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s")
    verdict = "met" if max(added) <= 0.2 else "NOT met (rerun on a quiet machine before concluding)"
    print(f"target: enforcement adds ≤ 0.2 ms at p50 — {verdict}")


if __name__ == "__main__":
    main()
