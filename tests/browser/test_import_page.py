"""Finance imports a 200,000-row usage file in the browser and watches the bar reach 100 %,
with a real Celery worker doing the import; the counts match what the file holds, the
rejected lines download, and the page survives a reload."""

from __future__ import annotations

import csv
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from celery.worker import WorkController
from playwright.sync_api import Page, expect

from tests.test_celery_worker import _close_worker_connections
from toki_dashboard.celery import app
from usage.import_jobs.models import ImportJob, ImportState
from usage.models import Account, UsageRecord
from usage.services import create_account

ROWS = 200_000
IMPORT_DEADLINE_SECONDS = 900  # SQLite on a busy two-core runner stores ~1,500 rows/s
HEADER = "request_id,occurred_at,model,api_key,prompt_tokens,completion_tokens\n"


def _set_routes(routes: object) -> None:
    """task_routes, taking effect now: the app's router reads them once, when it is first used."""
    app.conf.task_routes = routes
    app.amqp.flush_routes()
    del app.amqp.router  # a cached property: built again from the new routes on next use


@pytest.fixture
def import_worker(transactional_db: None) -> Iterator[WorkController]:
    """A real Celery worker (as tests/test_celery_worker.py starts one) consuming imports only:
    storing 200,000 records also queues billing work (allocations, alert checks) that would
    keep a shared worker busy long after the import, and that has tests of its own."""
    queue = f"toki-test-imports-{uuid.uuid4().hex[:8]}"
    routes = app.conf.task_routes
    _set_routes({"usage.tasks.run_usage_import": {"queue": queue}})
    task_postrun.connect(_close_worker_connections, weak=False)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30, queues=[queue]) as started:
            yield started
    finally:
        task_postrun.disconnect(_close_worker_connections)
        _set_routes(routes)
        app.amqp.queues._consume_from = None  # start_worker(queues=…) selected them on the app itself
        with app.connection_for_write() as connection:
            for name in (queue, app.conf.task_default_queue):  # leave nothing behind in a shared Redis
                bound = app.amqp.queues[name].bind(connection.default_channel)
                bound.declare()
                bound.delete()


@dataclass
class UsageFile:
    path: Path
    rows: int = 0
    unique_valid: int = 0
    repeated: int = 0
    bad_lines: list[int] = field(default_factory=list)


def write_usage_file(path: Path, rows: int) -> UsageFile:
    """Rows of three kinds, counted as they are written: new calls, calls the file already had
    (repeated further down, so they are duplicates), and rows whose prompt_tokens is not a number."""
    written = UsageFile(path)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for i in range(rows):
            line = i + 2  # the header is line 1
            if i % 97 == 5:
                out.write(f"bad-{i},2026-11-20T10:00:00Z,gpt-4o,key-{i % 5},many,20\n")
                written.bad_lines.append(line)
            elif i % 11 == 4 and i > 2500:
                first = i - 2500  # a row already written, in an earlier batch
                while first % 97 == 5 or (first % 11 == 4 and first > 2500):
                    first -= 1
                out.write(_row(first))
                written.repeated += 1
            else:
                out.write(_row(i))
                written.unique_valid += 1
            written.rows += 1
    return written


def _row(i: int) -> str:
    when = f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z"
    return f"call-{i},{when},gpt-4o-mini,key-{i % 5},{100 + i % 900},{i % 300}\n"


def bar_value(page: Page) -> int:
    return int(page.locator("#import-bar").get_attribute("value") or 0)


def test_finance_uploads_200000_rows_and_watches_the_bar_reach_100_percent_with_the_right_counts(
    import_worker: WorkController,
    page: Page,
    log_in: Callable[[Page], Page],
    tmp_path: Path,
    settings,
    browsing,
    screenshot,
) -> None:
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    account: Account = create_account(name="Acme Research", slug="acme", currency="USD")
    usage = write_usage_file(tmp_path / "usage-200k.csv", ROWS)
    assert usage.rows == ROWS and usage.repeated > 0 and usage.bad_lines
    log_in(page)

    page.goto("/imports/")
    page.get_by_label("File", exact=True).set_input_files(str(usage.path))
    page.get_by_role("button", name="Import").click()
    page.wait_for_url("**/imports/*/")

    seen: list[int] = []
    deadline = time.monotonic() + IMPORT_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        seen.append(bar_value(page))
        if seen[-1] == 100 and page.locator("#import-summary").is_visible():
            break
        if len(seen) == 20:
            screenshot(page, "import-running")
        time.sleep(0.5)
    assert seen[-1] == 100, f"the bar stopped at {seen[-1]} %"
    assert any(0 < value < 100 for value in seen), f"the bar never showed progress between 0 and 100: {set(seen)}"
    assert seen == sorted(seen), "the bar went backwards"
    screenshot(page, "import-done", full_page=True)

    job = ImportJob.objects.get(account=account)
    assert job.state == ImportState.DONE, job.message
    expect(page.locator("#import-rows-read")).to_have_text(f"{ROWS:,}")
    expect(page.locator("#import-stored")).to_have_text(f"{usage.unique_valid:,}")
    expect(page.locator("#import-duplicates")).to_have_text(f"{usage.repeated:,}")
    expect(page.locator("#import-rejected")).to_have_text(f"{len(usage.bad_lines):,}")
    assert UsageRecord.objects.filter(account=account).count() == usage.unique_valid
    assert not Path(settings.IMPORT_UPLOAD_DIR).exists() or list(Path(settings.IMPORT_UPLOAD_DIR).iterdir()) == []

    with page.expect_download() as download_info:
        page.locator("#download-rejected").click()
    saved = tmp_path / "rejected.csv"
    download_info.value.save_as(saved)
    with saved.open(encoding="utf-8") as rejected_file:
        rejected = list(csv.reader(rejected_file))
    assert rejected[0] == ["line", "field", "reason", "kind"]
    assert [int(r[0]) for r in rejected[1:]] == usage.bad_lines
    assert {r[1] for r in rejected[1:]} == {"prompt_tokens"}
    assert all("'many' is not an integer" in r[2] for r in rejected[1:])

    page.reload()  # the page survives a reload: the summary is read from the job
    expect(page.locator("#import-summary")).to_contain_text(f"{usage.unique_valid:,} stored")
    page.goto("/imports/")
    expect(page.locator(f'#imports-table tr[data-import="{job.pk}"]')).to_contain_text("Done")
    assert browsing.problems(page) == []
