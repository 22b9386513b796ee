"""Memory of the Import page's path as the file grows: the upload parsed by the streaming
handler (as the web server does) and then imported by the task's service, in one process.

For each size, a fresh process writes a multipart body holding a CSV of N rows, parses it
with `ImportUploadHandler` into IMPORT_UPLOAD_DIR, runs `process_import` on a job for it
and prints its peak RSS. The smallest file is the baseline of the same run: memory is flat
when the largest file's peak stays within a few MB of it.

    .venv/bin/python -m bench.import_upload [--rows 20000,100000] [--database-url URL]

Defaults to PostgreSQL (bench/_common.py); `--database-url sqlite:///var/bench/import.sqlite3`
measures embedded mode.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from bench._common import BENCH_DATABASE_URL, PYTHON, ROOT, machine

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from bench._common import setup_django

database_url, rows, work = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
setup_django(database_url)
from django.conf import settings
from django.core.management import call_command
from django.http.multipartparser import MultiPartParser

from bench._common import ensure_account
from usage.import_jobs.models import ImportJob
from usage.import_jobs.services import process_import
from usage.import_jobs.upload import ImportUploadHandler

call_command("migrate", verbosity=0)
account = ensure_account(f"import-upload-{rows}")
settings.IMPORT_UPLOAD_DIR = work / "uploads"
boundary = "----bench-boundary"
body = work / "body"
run = time.time_ns()
with body.open("wb") as out:
    out.write((f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="usage.csv"\r\n'
               "Content-Type: text/csv\r\n\r\n").encode())
    out.write(b"request_id,occurred_at,model,api_key,prompt_tokens,completion_tokens\n")
    for i in range(rows):
        when = f"2026-11-{1 + i % 28:02d}T10:{i % 60:02d}:00Z"
        out.write(f"b{run}-{i},{when},gpt-4o-mini,key-{i % 7},{100 + i % 900},{i % 300}\n".encode())
    out.write(f"\r\n--{boundary}--\r\n".encode())
size = body.stat().st_size
meta = {"CONTENT_TYPE": f"multipart/form-data; boundary={boundary}", "CONTENT_LENGTH": str(size)}
started = time.perf_counter()
with body.open("rb") as stream:
    _, files = MultiPartParser(meta, stream, [ImportUploadHandler()]).parse()
upload = files["file"]
parsed = time.perf_counter()
rss_after_upload = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
job = ImportJob.objects.create(account=account, file_name="usage.csv", size_bytes=upload.size, format="csv",
                               stored_path=str(upload.path))
state = process_import(job.pk)
done = time.perf_counter()
job.refresh_from_db()
print(json.dumps({
    "rows": rows, "bytes": upload.size, "state": state, "stored": job.stored,
    "upload_s": parsed - started, "import_s": done - parsed,
    "rss_after_upload_mb": rss_after_upload,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    "file_left": upload.path.exists(),
}))
"""


def measure(database_url: str, rows: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="toki-bench-import-") as work:
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        env.pop("REDIS_URL", None)
        out = subprocess.run(
            [PYTHON, "-c", CHILD, database_url, str(rows), work],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="20000,100000", help="comma-separated row counts, smallest first")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", BENCH_DATABASE_URL))
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.rows.split(","))
    print(f"machine: {machine()}")
    print(f"database: {args.database_url.split('@')[-1]}")
    results = []
    for rows in sizes:
        result = measure(args.database_url, rows)
        results.append(result)
        print(
            f"{result['rows']:>9,} rows {result['bytes'] / 1e6:7.1f} MB: upload parsed in "
            f"{result['upload_s']:.2f} s, imported in {result['import_s']:.1f} s "
            f"({result['rows'] / result['import_s']:,.0f} rows/s, {result['stored']:,} stored), "
            f"peak RSS after upload {result['rss_after_upload_mb']} MB, after import {result['peak_rss_mb']} MB, "
            f"upload deleted: {not result['file_left']}"
        )
    base, largest = results[0], results[-1]
    growth = largest["peak_rss_mb"] - base["peak_rss_mb"]
    ratio = largest["bytes"] / base["bytes"]
    print(
        f"file {ratio:.1f}x larger than the baseline: peak RSS {base['peak_rss_mb']} → {largest['peak_rss_mb']} MB "
        f"({growth:+d} MB); load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    sys.exit(0 if all(r["state"] == "done" and not r["file_left"] for r in results) else 1)


if __name__ == "__main__":
    main()
