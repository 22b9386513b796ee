"""Ingestion speed into PostgreSQL against a raw COPY into the same table (bench/README.md).

    .venv/bin/python bench/ingest.py [--records 200000] [--batch 1000] [--workers 2] [--clients 4] [--per-day N]
                                     [--database-url postgres://toki:toki@127.0.0.1:5432/toki_bench]

The database must exist and be disposable (it is migrated; the accounts bench-copy,
bench-import and bench-api are emptied before and after their runs; other data is left
alone). In one run, on the same generated records (bench/_common.generate_records; spread
so that there are as many per hour as 1,000,000 over 60 days):

1. raw COPY: the rows ingestion would store, prepared beforehand in COPY's text format,
   streamed with one `COPY usage_usagerecord FROM STDIN` and committed (every index and
   foreign-key check of the real table; no parsing, validation, pricing or rollup), three
   times (--copy-runs): the median is the baseline the others are measured against.
2. `manage.py import_usage FILE` of the same records as JSONL, in a subprocess, then the
   same file again (a replay: nothing new may be stored).
3. `POST /api/v1/usage` in batches of --batch through a real server: uvicorn running
   toki_dashboard.asgi (--workers processes, DEBUG off) and --clients concurrent httpx
   clients with an ingestion token created for the run; then one replayed pass.

Afterwards the rollups of the import and API accounts must equal a recount of their records.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BENCH_DATABASE_URL,
    BENCH_ENV,
    PYTHON,
    ROOT,
    generate_records,
    machine,
    postgres_setting,
    setup_django,
)
from bench.proxy import free_port, wait_for_port

DESIGN_RATE_PER_DAY = 1_000_000 / 60  # the pages benchmark's density of records


def empty_account(slug: str) -> Any:
    """The account `slug` with its prices, with no records or rollups left (fast SQL, then VACUUM)."""
    from django.db import connection

    from bench._common import ensure_account

    account = ensure_account(slug)
    with connection.cursor() as cursor:
        tables = (
            "billing_allocation",
            "usage_callkey",
            "usage_callsighting",
            "usage_usagerecord",
            "usage_registeredrequest",
        )
        for table in (*tables, "usage_hourlyusage", "usage_dailyusage", "usage_latencyhistogram"):
            column = "record_id IN (SELECT id FROM usage_usagerecord WHERE account_id = %s)"
            where = column if table == "billing_allocation" else "account_id = %s"
            cursor.execute(f"DELETE FROM {table} WHERE {where}", [account.pk])
    vacuum()
    return account


def vacuum() -> None:
    from django.db import connection

    # Every table the emptying left dead rows in, as autovacuum would in time (it is off on
    # the benchmark machine). And the catalogs: each API request's connection creates its two
    # staging tables and drops them when it closes, 150,000 dead pg_attribute rows in an hour
    # of runs, which slowed every later connection's set-up.
    tables = ("usagerecord", "registeredrequest", "hourlyusage", "dailyusage", "latencyhistogram")
    catalogs = ("pg_attribute", "pg_class", "pg_type", "pg_depend")
    with connection.cursor() as cursor:
        for table in [f"usage_{name}" for name in tables] + [f"pg_catalog.{name}" for name in catalogs]:
            cursor.execute(f"VACUUM ANALYZE {table}")


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w") as file:
        for record in records:
            file.write(json.dumps(record, separators=(",", ":")) + "\n")


def copy_text(account: Any, records: list[dict[str, Any]]) -> tuple[bytes, str]:
    """The rows ingestion would store for `records`, in COPY text format, and their column list.

    Built through the production row builder, then turned into COPY text by the server
    itself (COPY into a temporary table, COPY out): what psql's \\copy would send.
    """
    from django.db import connection, transaction

    from usage.estimation.estimator import current_estimator
    from usage.ingestion import RowBuilder, content_hash, resolve_keys
    from usage.models import UsageRecord
    from usage.pricing.price_book import PriceBook
    from usage.schemas import validate_records
    from usage.sql import _json_text

    valid, rejected = validate_records(records)
    assert not rejected, rejected[:3]
    keys = resolve_keys(account, {r.api_key for _, r in valid if r.api_key})
    builder = RowBuilder(account, keys, PriceBook.for_account(account), current_estimator(), "import")
    rows = [builder.build(record, content_hash(record)) for _, record in valid]
    names = list(rows[0])
    fields = [UsageRecord._meta.get_field(name) for name in names]
    columns = ", ".join(f.column for f in fields)  # type: ignore[union-attr]
    json_names = {n for n, f in zip(names, fields, strict=True) if f.get_internal_type() == "JSONField"}
    out = io.BytesIO()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE bench_copy ON COMMIT DROP AS SELECT {columns} FROM usage_usagerecord LIMIT 0"
        )
        with cursor.cursor.copy(f"COPY bench_copy ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([_json_text(row[n]) if n in json_names else row[n] for n in names])
        with cursor.cursor.copy(f"COPY bench_copy ({columns}) TO STDOUT") as copy:
            for block in copy:
                out.write(block)
    return out.getvalue(), columns


def raw_copy(data: bytes, columns: str) -> float:
    """Seconds to COPY `data` into usage_usagerecord and commit."""
    from django.db import connection, transaction

    block = 1 << 20
    started = time.perf_counter()
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY usage_usagerecord ({columns}) FROM STDIN") as copy,
    ):
        for start in range(0, len(data), block):
            copy.write(data[start : start + block])
    return time.perf_counter() - started


def child_env(database_url: str, var: Path) -> dict[str, str]:
    env = os.environ | BENCH_ENV | {"DATABASE_URL": database_url, "TOKI_VAR_DIR": str(var)}
    env.pop("REDIS_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@dataclass(frozen=True)
class ImportRun:
    wall: float  # seconds, start-up included
    summary: str  # what the command printed
    rss_mb: int  # peak resident memory
    cpu: float  # seconds of CPU of the command's process, start-up included
    machine_busy: float  # seconds of CPU the whole machine spent meanwhile (/proc/stat)


def machine_busy_seconds() -> float:
    """CPU seconds the machine has spent busy since boot, all cores (Linux /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_import(path: Path, slug: str, env: dict[str, str]) -> ImportRun:
    """`manage.py import_usage` of `path` into the account `slug`, with what it cost."""
    started, busy = time.perf_counter(), machine_busy_seconds()
    code = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr[-2000:]); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print('MAXRSS', u.ru_maxrss, 'CPU', u.ru_utime + u.ru_stime); sys.exit(p.returncode)"
    )
    out = subprocess.run(
        [PYTHON, "-c", code, PYTHON, str(ROOT / "manage.py"), "import_usage", str(path), "--account", slug],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall, busy = time.perf_counter() - started, machine_busy_seconds() - busy
    if out.returncode:
        raise RuntimeError(f"import_usage failed: {out.stderr[-2000:]}")
    found = re.search(r"MAXRSS (\d+) CPU ([0-9.]+)", out.stdout)
    assert found is not None, out.stdout
    summary = " ".join(line for line in out.stdout.splitlines() if not line.startswith("MAXRSS"))
    return ImportRun(wall, summary, int(found.group(1)) // 1024, float(found.group(2)), busy)


def cpu_per_record(run: ImportRun, start_up: ImportRun, count: int) -> str:
    """Where an import's CPU went, per record: the importer's own process (its start-up, the
    import of an empty file, taken out) and the rest of the machine (PostgreSQL's backends,
    on a machine otherwise quiet)."""
    own = run.cpu - start_up.cpu
    rest = run.machine_busy - run.cpu - (start_up.machine_busy - start_up.cpu)
    return f"CPU per record: importer {own / count * 1e6:.0f} µs, the rest of the machine {rest / count * 1e6:.0f} µs"


def elapsed_of(summary: str) -> float:
    return float(re.search(r"Elapsed ([0-9.]+) s", summary).group(1))  # type: ignore[union-attr]


def post_batches(port: int, token: str, records: list[dict[str, Any]], batch: int, clients: int) -> tuple[float, dict]:
    """Seconds to POST every record in batches from `clients` threads, and the summed answers."""
    import httpx

    bodies = [json.dumps({"records": records[i : i + batch]}).encode() for i in range(0, len(records), batch)]
    totals = {"accepted": 0, "duplicates": 0, "conflicts": 0, "rejected": 0}
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))
    errors: list[str] = []

    def client() -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                answer = http.post("/api/v1/usage", content=bodies[index])
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code}: {answer.text[:300]}")
                    return
                body = answer.json()
                with lock:
                    for name in totals:
                        value = body[name]
                        totals[name] += len(value) if isinstance(value, list) else value

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"the API answered {errors[0]}")
    return elapsed, totals


def start_server(env: dict[str, str], workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "uvicorn", "toki_dashboard.asgi:application", "--port", str(port), "--workers", str(workers)]
        + ["--no-access-log", "--log-level", "warning"],
        env=env,
        cwd=ROOT,
    )
    wait_for_port(port, server)
    # The port opens before every worker has imported Django: warm each one up.
    import httpx

    for _ in range(workers * 4):
        httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=60)
    return server, port


def line(label: str, records: int, seconds: float, baseline: float | None) -> str:
    rate = records / seconds if seconds else float("inf")
    ratio = f"{rate / baseline:6.1%} of raw COPY" if baseline else ""
    return f"{label:48} {records:>9,} records {seconds:8.2f} s {rate:>10,.0f} records/s  {ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000, help="records per API request (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent API clients (default 4)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", BENCH_DATABASE_URL))
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--copy-runs", type=int, default=3, help="raw COPYs whose median is the baseline")
    parser.add_argument("--per-day", type=float, default=DESIGN_RATE_PER_DAY, help="records a day (default 16,667)")
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        parser.error("this benchmark measures PostgreSQL: pass a postgres:// --database-url")

    var = Path(tempfile.mkdtemp(prefix="toki-bench-ingest-"))
    os.environ["TOKI_VAR_DIR"] = str(var)
    setup_django(args.database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"machine: {machine()}, PostgreSQL autovacuum {postgres_setting('autovacuum')}")
    days = args.records / args.per_day
    print(f"generating {args.records:,} records over {days:,.2f} days ({args.per_day:,.0f} a day) …", flush=True)
    records = list(generate_records(args.records, days=days, seed=args.seed, prefix="ingest"))
    path = var / "usage.jsonl"
    write_jsonl(path, records)
    print(f"file: {path.stat().st_size / 1e6:,.1f} MB", flush=True)

    results: list[str] = []
    baseline = _measure_copy(records, results, args.copy_runs)
    env = child_env(args.database_url, var)
    import_agrees = _measure_import(path, env, args.records, baseline, results)
    api_agrees = _measure_api(records, args, env, baseline, results)
    for slug in ("bench-import", "bench-api"):
        empty_account(slug)
    print("\nsummary")
    print("\n".join(results))
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not (import_agrees and api_agrees):
        sys.exit("rollups differ from a recount")


def _measure_copy(records: list[dict[str, Any]], results: list[str], runs: int) -> float:
    """The raw COPY of the records, the baseline: records per second, the median of `runs`
    COPYs (one COPY into a large table varies by a third from run to run here)."""
    copy_account = empty_account("bench-copy")
    data, columns = copy_text(copy_account, records)
    rates = []
    for run in range(runs):
        empty_account("bench-copy")
        copy_seconds = raw_copy(data, columns)
        rates.append(len(records) / copy_seconds)
        print(line(f"raw COPY into usage_usagerecord, run {run + 1}", len(records), copy_seconds, None), flush=True)
    baseline = statistics.median(rates)
    results.append(line(f"raw COPY, median of {runs}", len(records), len(records) / baseline, None))
    del data
    empty_account("bench-copy")
    return baseline


def _measure_import(path: Path, env: dict[str, str], count: int, baseline: float, results: list[str]) -> bool:
    """`manage.py import_usage` of the file, then again (all duplicates); whether the rollups agree."""
    from usage import rollups

    empty_file = path.with_name("empty.jsonl")
    empty_file.write_text("")
    import_account = empty_account("bench-import")
    start_up = run_import(empty_file, "bench-import", env)
    run = run_import(path, "bench-import", env)
    seconds = elapsed_of(run.summary)
    assert f"{count:,} accepted" in run.summary, run.summary
    results.append(line("import_usage (JSONL)", count, seconds, baseline))
    print(results[-1], f"| wall {run.wall:.1f} s with start-up, peak RSS {run.rss_mb} MB", flush=True)
    results.append(f"import_usage: {cpu_per_record(run, start_up, count)}; a raw COPY {1e6 / baseline:.0f} µs")
    replay = run_import(path, "bench-import", env)
    assert "0 accepted" in replay.summary and f"{count:,} duplicates" in replay.summary, replay.summary
    replay_seconds = elapsed_of(replay.summary)
    results.append(line("import_usage replay (all duplicates)", count, replay_seconds, baseline))
    print(results[-1], f"| peak RSS {replay.rss_mb} MB", flush=True)
    results.append(f"import_usage: a replay is {seconds / replay_seconds:.2f}x as fast as new records")
    mismatches = rollups.verify(import_account)
    print(f"import rollups equal a recount: {not mismatches}")
    return not mismatches


def _measure_api(
    records: list[dict[str, Any]], args: argparse.Namespace, env: dict[str, str], baseline: float, results: list[str]
) -> bool:
    """POST /api/v1/usage from concurrent clients, then again (all duplicates); whether the rollups agree."""
    from usage import rollups
    from usage.services import create_api_token

    api_account = empty_account("bench-api")
    _token, secret = create_api_token(account=api_account, name="bench", scopes=["ingest"])
    server, port = start_server(env, args.workers)
    try:
        label = f"POST /api/v1/usage, {args.batch:,}/request, {args.workers}w {args.clients}c"
        seconds, totals = post_batches(port, secret, records, args.batch, args.clients)
        assert totals["accepted"] == args.records, totals
        results.append(line(label, args.records, seconds, baseline))
        print(results[-1], flush=True)
        replay_seconds, totals = post_batches(port, secret, records, args.batch, args.clients)
        assert totals["duplicates"] == args.records, totals
        results.append(line("POST /api/v1/usage replay (all duplicates)", args.records, replay_seconds, baseline))
        print(results[-1], flush=True)
        results.append(f"POST /api/v1/usage: a replay is {seconds / replay_seconds:.2f}x as fast as new records")
    finally:
        server.terminate()
        server.wait(timeout=60)
    mismatches = rollups.verify(api_account)
    print(f"API rollups equal a recount: {not mismatches}")
    return not mismatches


if __name__ == "__main__":
    main()
