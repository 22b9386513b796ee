"""Imports from the browser: the upload streams to disk, a real Celery worker runs the import
and keeps the job's progress, the file is deleted after, and bad input never 500s."""

from __future__ import annotations

import csv
import io
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http.multipartparser import MultiPartParser
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.test_celery_worker import worker  # noqa: F401  (the real worker fixture)
from usage.import_jobs.models import ImportJob, ImportRejection, ImportState
from usage.import_jobs.services import process_import
from usage.import_jobs.upload import ImportUploadHandler
from usage.models import Account, UsageRecord

DEADLINE_SECONDS = 60
HEADER = "request_id,occurred_at,model,api_key,prompt_tokens,completion_tokens\n"


def row(request_id: str, prompt: str = "100", model: str = "gpt-4o") -> str:
    return f"{request_id},2026-11-20T10:00:00Z,{model},backend,{prompt},20\n"


@pytest.fixture
def uploads(settings: Any, tmp_path: Path) -> Path:
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    return settings.IMPORT_UPLOAD_DIR


def upload(client: Client, name: str, content: bytes, **extra: str) -> Any:
    return client.post(reverse("usage:imports"), {"file": SimpleUploadedFile(name, content), "format": "auto"} | extra)


def wait_until_finished(job_id: int) -> ImportJob:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        job = ImportJob.objects.get(pk=job_id)
        if job.finished:
            return job
        time.sleep(0.1)
    raise AssertionError(f"the worker did not finish import {job_id} within {DEADLINE_SECONDS}s")


def test_an_uploaded_csv_is_imported_by_the_worker_counted_and_deleted(
    worker: Any,  # noqa: F811
    account: Account,
    finance_client: Client,
    uploads: Path,
) -> None:
    UsageRecord.objects.all().delete()
    upload(finance_client, "first.csv", (HEADER + row("a") + row("b")).encode())
    wait_until_finished(ImportJob.objects.get().pk)
    content = HEADER + row("a") + row("c") + row("d", prompt="lots") + row("e", model="") + 'f,"broken\n' + row("g")

    response = upload(finance_client, "second.csv", content.encode())

    job = ImportJob.objects.exclude(file_name="first.csv").get()
    assert response.status_code == 302 and response["Location"] == reverse("usage:import_detail", args=[job.pk])
    job = wait_until_finished(job.pk)
    assert job.state == ImportState.DONE, job.message
    assert (job.rows_read, job.stored, job.duplicates, job.rejected) == (6, 2, 1, 3)
    assert job.created_by is not None and job.created_by.username == "fiona"
    assert (job.format, job.size_bytes, job.percent) == ("csv", len(content.encode()), 100)
    assert job.started_at is not None and job.finished_at is not None and job.rate > 0
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["a", "b", "c", "g"]
    assert job.stored_path == "" and list(uploads.iterdir()) == []  # the upload is gone, the history stays
    rejected = list(csv.reader(io.StringIO(b"".join(finance_client.get(f"/imports/{job.pk}/rejected.csv")).decode())))
    assert rejected[0] == ["line", "field", "reason", "kind"]
    assert [(r[0], r[1]) for r in rejected[1:]] == [("4", "prompt_tokens"), ("5", "model"), ("6", "(whole line)")]
    assert "'lots' is not an integer" in rejected[1][2]


def test_a_file_whose_header_is_unusable_fails_with_the_reason_and_is_deleted(
    account: Account, finance_client: Client, uploads: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        upload(finance_client, "usage.csv", b"request_id,when\nx,y\n")
    assert len(callbacks) == 1  # the task is sent once the job is committed
    job = ImportJob.objects.get()

    assert process_import(job.pk) == ImportState.FAILED

    job.refresh_from_db()
    assert "lacks required column(s): occurred_at, model" in job.message
    assert job.stored_path == "" and list(uploads.iterdir()) == []
    page = finance_client.get(reverse("usage:import_detail", args=[job.pk])).content.decode()
    assert "occurred_at, model" in page and "hx-trigger" not in page


def test_a_job_is_run_once_even_when_its_task_is_delivered_twice(
    account: Account, finance_client: Client, uploads: Path
) -> None:
    upload(finance_client, "usage.csv", (HEADER + row("a")).encode())
    job = ImportJob.objects.get()

    assert process_import(job.pk) == ImportState.DONE
    assert process_import(job.pk) is None
    assert ImportJob.objects.get().stored == 1 and UsageRecord.objects.count() == 1


def test_the_progress_region_polls_while_running_and_stops_when_done(account: Account, finance_client: Client) -> None:
    job = ImportJob.objects.create(
        account=account, file_name="u.csv", size_bytes=1000, format="csv", state=ImportState.RUNNING,
        bytes_read=250, rows_read=40, stored=30, duplicates=6, rejected=4, rate=20.0, seconds_left=6,
        started_at=timezone.now(),
    )  # fmt: skip
    url = reverse("usage:import_detail", args=[job.pk])

    running = finance_client.get(url, headers={"HX-Request": "true"}).content.decode()
    ImportJob.objects.filter(pk=job.pk).update(state=ImportState.DONE, finished_at=timezone.now(), bytes_read=1000)
    done = finance_client.get(url, headers={"HX-Request": "true"}).content.decode()
    full = finance_client.get(url).content.decode()

    assert running.lstrip().startswith("<section") and "<html" not in running
    assert 'hx-trigger="every 1s"' in running and 'value="25"' in running and "about 6 s" in running
    assert "hx-trigger" not in done and 'value="100"' in done and "Download the rejected lines" in done
    assert "<html" in full and "Import of u.csv" in full


def test_the_job_list_shows_running_and_past_imports_and_refreshes_while_one_runs(
    account: Account, finance_client: Client
) -> None:
    ImportJob.objects.create(account=account, file_name="old.csv", size_bytes=5, format="csv", state=ImportState.DONE)
    ImportJob.objects.create(account=account, file_name="new.csv", size_bytes=5, format="csv", state="running")

    page = finance_client.get(reverse("usage:imports")).content.decode()

    assert "old.csv" in page and "new.csv" in page and "hx-trigger" in page
    ImportJob.objects.filter(file_name="new.csv").update(state=ImportState.DONE)
    assert "hx-trigger" not in finance_client.get(reverse("usage:imports")).content.decode()


def test_an_engineer_may_not_upload_and_nothing_is_written(engineer_client: Client, uploads: Path) -> None:
    response = upload(engineer_client, "usage.csv", (HEADER + row("a")).encode())

    assert response.status_code == 403
    assert not uploads.exists() or list(uploads.iterdir()) == []
    assert not ImportJob.objects.exists()


def test_a_file_over_the_limit_is_refused_with_the_limit_and_not_kept(
    account: Account, finance_client: Client, uploads: Path, settings: Any
) -> None:
    settings.IMPORT_MAX_UPLOAD_MB = 1

    response = upload(finance_client, "big.csv", HEADER.encode() + b"x" * (1024 * 1024 + 1))

    assert response.status_code == 413
    assert "larger than 1 MB" in response.content.decode()
    assert list(uploads.iterdir()) == [] and not ImportJob.objects.exists()


def test_a_file_name_that_names_no_format_asks_for_one_and_is_not_kept(
    account: Account, finance_client: Client, uploads: Path
) -> None:
    response = upload(finance_client, "usage.txt", b"anything")

    assert response.status_code == 400
    assert "choose CSV, JSON lines or New API" in response.content.decode()
    assert list(uploads.iterdir()) == [] and not ImportJob.objects.exists()


def test_an_upload_without_a_csrf_token_is_refused_and_not_kept(
    account: Account, finance_client: Client, uploads: Path
) -> None:
    finance_client.handler.enforce_csrf_checks = True

    response = upload(finance_client, "usage.csv", (HEADER + row("a")).encode())

    assert response.status_code == 403
    assert list(uploads.iterdir()) == [] and not ImportJob.objects.exists()


def test_another_accounts_import_is_not_found(account: Account, finance_client: Client) -> None:
    from usage.services import create_account

    other = create_account(name="Other", slug="other")
    job = ImportJob.objects.create(account=other, file_name="theirs.csv", size_bytes=5, format="csv")

    assert finance_client.get(reverse("usage:import_detail", args=[job.pk])).status_code == 404
    assert finance_client.get(reverse("usage:import_rejections_csv", args=[job.pk])).status_code == 404


def test_rejected_lines_beyond_the_kept_list_are_counted_in_the_csv(
    account: Account, finance_client: Client, uploads: Path, settings: Any
) -> None:
    settings.IMPORT_REJECTIONS_KEPT = 3
    upload(finance_client, "usage.csv", (HEADER + "".join(row(f"r{i}", prompt="x") for i in range(5))).encode())
    job = ImportJob.objects.get()

    process_import(job.pk)

    assert ImportJob.objects.get().rejected == 5 and ImportRejection.objects.count() == 3
    lines = b"".join(finance_client.get(reverse("usage:import_rejections_csv", args=[job.pk]))).decode().splitlines()
    assert len(lines) == 1 + 3 + 1 and "2 more not listed" in lines[-1]


# ── Memory ────────────────────────────────────────────────────────────────────


def _multipart_file(path: Path, size: int) -> tuple[int, str]:
    """A multipart body with one `file` part of `size` bytes, written to `path` in chunks."""
    boundary = "----toki-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="usage.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    chunk = (HEADER + row("x")).encode() * 16_000
    with path.open("wb") as out:
        out.write(head)
        written = 0
        while written < size:
            piece = chunk[: size - written]
            out.write(piece)
            written += len(piece)
        out.write(tail)
    return len(head) + size + len(tail), boundary


def _peak_parsing(body: Path, length: int, boundary: str) -> tuple[int, int]:
    """Peak memory (traced allocations) while the handler parses the body, and the stored size."""
    meta = {"CONTENT_TYPE": f"multipart/form-data; boundary={boundary}", "CONTENT_LENGTH": str(length)}
    handler = ImportUploadHandler()
    with body.open("rb") as stream:
        tracemalloc.start()
        try:
            _, files = MultiPartParser(meta, stream, [handler]).parse()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    stored = files["file"]
    size = stored.path.stat().st_size
    stored.discard()
    return peak, size


def test_parsing_an_upload_takes_the_same_memory_for_a_small_and_a_ten_times_larger_file(
    tmp_path: Path, uploads: Path
) -> None:
    small_length, boundary = _multipart_file(tmp_path / "small.body", 5 * 1024 * 1024)
    large_length, _ = _multipart_file(tmp_path / "large.body", 50 * 1024 * 1024)

    small_peak, small_size = _peak_parsing(tmp_path / "small.body", small_length, boundary)
    large_peak, large_size = _peak_parsing(tmp_path / "large.body", large_length, boundary)

    assert (small_size, large_size) == (5 * 1024 * 1024, 50 * 1024 * 1024)
    print(f"peak while parsing: 5 MB upload {small_peak / 1e6:.2f} MB, 50 MB upload {large_peak / 1e6:.2f} MB")
    assert large_peak < 4 * 1024 * 1024  # a few chunks, never the file
    assert large_peak < small_peak * 1.5 + 512 * 1024


# ── The body limit in front of Django (ASGI) ──────────────────────────────────


@pytest.mark.django_db(transaction=True)
def test_only_a_logged_in_session_may_send_the_import_page_more_than_the_usual_10_mb(
    make_user: Any, settings: Any
) -> None:
    import asyncio

    from tests.test_bad_input import MB, _post_chunked
    from toki_dashboard.roles import Role

    settings.IMPORT_MAX_UPLOAD_MB = 12
    client = Client()
    client.force_login(make_user("fiona", Role.FINANCE))
    session = [
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())
    ]
    multipart = [(b"content-type", b"multipart/form-data; boundary=none-here")]

    anonymous = asyncio.run(_post_chunked("/imports/", 11, b" " * MB, multipart))
    logged_in = asyncio.run(_post_chunked("/imports/", 11, b" " * MB, multipart + session))
    too_large = asyncio.run(_post_chunked("/imports/", 20, b" " * MB, multipart + session))

    assert anonymous[0] == 413 and b"10 MB" in anonymous[1]
    assert logged_in[0] == 403 and logged_in[2] >= 11  # read to the end; then refused for its missing CSRF token
    assert too_large[0] == 413 and b"larger than 12 MB, the largest the Import page takes" in too_large[1]
    assert too_large[2] <= 14  # stopped at the limit


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"no boundary"),
        (
            "multipart/form-data; boundary=zz",
            b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\nabc',
        ),
        ("multipart/form-data; boundary=zz", b"\x00\xff"),
        ("application/json", b"{}"),
    ],
    ids=["no-boundary", "cut-short", "binary", "not-a-form"],
)
def test_a_broken_upload_is_a_400_and_leaves_no_file(
    account: Account, finance_client: Client, uploads: Path, content_type: str, body: bytes
) -> None:
    client = Client(raise_request_exception=False)
    client.cookies = finance_client.cookies

    response = client.post(reverse("usage:imports"), data=body, content_type=content_type)

    assert response.status_code == 400
    assert not uploads.exists() or list(uploads.iterdir()) == []
    assert not ImportJob.objects.exists()


def test_an_import_left_running_by_a_dead_worker_fails_when_its_task_comes_again(
    account: Account, finance_client: Client, uploads: Path
) -> None:
    from datetime import timedelta

    upload(finance_client, "usage.csv", (HEADER + row("a")).encode())
    job = ImportJob.objects.get()
    an_hour_ago = timezone.now() - timedelta(hours=1)
    ImportJob.objects.filter(pk=job.pk).update(
        state=ImportState.RUNNING, started_at=an_hour_ago, updated_at=an_hour_ago
    )
    fresh = ImportJob.objects.create(
        account=account, file_name="b.csv", size_bytes=1, format="csv", state=ImportState.RUNNING
    )

    assert process_import(job.pk) is None and process_import(fresh.pk) is None

    job.refresh_from_db()
    assert job.state == ImportState.FAILED and "worker stopped" in job.message
    assert list(uploads.iterdir()) == [] and job.stored_path == ""
    assert ImportJob.objects.get(pk=fresh.pk).state == ImportState.RUNNING  # still writing its progress: left alone
