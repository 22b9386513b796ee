"""Starting an import from an upload, and running it (the Celery task's body)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from toki_dashboard import background
from usage.import_jobs.models import ImportJob, ImportRejection, ImportState
from usage.import_jobs.upload import StoredUpload
from usage.import_runs import PROGRESS_INTERVAL_SECONDS, ImportProgress, Snapshot, run_import
from usage.importers import ImportFileError, ImportFormat, Problem, Source
from usage.models import Account

logger = logging.getLogger(__name__)

REJECTION_FLUSH_ROWS = 1000
MAX_REASON_CHARS = 1000
MAX_FIELD_CHARS = 200


def start_import(account: Account, user: Any, upload: StoredUpload, import_format: ImportFormat) -> ImportJob:
    """A queued job for an upload already on disk; the task is sent once the row is committed."""
    with transaction.atomic():
        job = ImportJob.objects.create(
            account=account,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            file_name=(upload.name or "upload")[:255],
            size_bytes=upload.size or 0,
            format=import_format.value,
            stored_path=str(upload.path),
        )
        transaction.on_commit(lambda: background.enqueue("usage.tasks.run_usage_import", job.pk))
    return job


class _JobWriter:
    """Keeps a running job's row current: counts on each snapshot, rejected lines in batches."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.kept = ImportRejection.objects.filter(job=job).count()
        self.pending: list[ImportRejection] = []

    def problem(self, problem: Problem) -> None:
        if self.kept + len(self.pending) >= settings.IMPORT_REJECTIONS_KEPT:
            return  # the counts stay exact; the list stops here
        self.pending.append(
            ImportRejection(
                job=self.job,
                position=problem.position,
                field=problem.field[:MAX_FIELD_CHARS],
                reason=problem.reason[:MAX_REASON_CHARS],
                kind=problem.kind.value,
            )
        )
        if len(self.pending) >= REJECTION_FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            ImportRejection.objects.bulk_create(self.pending)
            self.kept += len(self.pending)
            self.pending = []

    def opened(self, source: Source) -> None:
        ImportJob.objects.filter(pk=self.job.pk).update(position_label=source.position_label)

    def snapshot(self, snapshot: Snapshot) -> None:
        self.flush()
        ImportJob.objects.filter(pk=self.job.pk).update(
            rows_read=snapshot.rows_read,
            stored=snapshot.stored,
            duplicates=snapshot.duplicates,
            rejected=snapshot.rejected,
            skipped=snapshot.skipped,
            bytes_read=snapshot.bytes_read,
            rate=snapshot.rate,
            seconds_left=snapshot.seconds_left,
            updated_at=timezone.now(),
        )


STALLED_AFTER = timedelta(minutes=10)  # a running import writes its row about every second


def process_import(job_id: int, *, interval: float = PROGRESS_INTERVAL_SECONDS) -> ImportState | None:
    """Runs a queued job: imports its file, keeping the row's progress current, then deletes
    the file. A job that is not queued (already run, or being run) is left alone: None;
    except one left running by a worker that died (no progress for STALLED_AFTER, and its
    task delivered again), which is marked failed and its file deleted."""
    now = timezone.now()
    if not ImportJob.objects.filter(pk=job_id, state=ImportState.QUEUED).update(
        state=ImportState.RUNNING, started_at=now, updated_at=now
    ):
        _fail_if_stalled(job_id, now)
        return None
    job = ImportJob.objects.select_related("account").get(pk=job_id)
    path = Path(job.stored_path)
    writer = _JobWriter(job)
    state, message = ImportState.DONE, ""
    try:
        run = run_import(
            job.account,
            path,
            ImportFormat(job.format),
            progress=ImportProgress(writer.snapshot, bytes_total=job.size_bytes, interval=interval),
            on_problem=writer.problem,
            on_open=writer.opened,
        )
        if run.summary.fatal:
            state, message = ImportState.FAILED, f"{run.summary.fatal} Records before that point are stored."
    except ImportFileError as exc:
        state, message = ImportState.FAILED, str(exc)
    except OSError as exc:
        state, message = ImportState.FAILED, f"The uploaded file cannot be read ({exc.strerror or exc})."
    except Exception:
        logger.exception("Import %s stopped", job_id)
        state, message = ImportState.FAILED, "The import stopped on an internal error; the records before it are kept."
    finally:
        writer.flush()
        path.unlink(missing_ok=True)
    finished = timezone.now()
    ImportJob.objects.filter(pk=job_id).update(
        state=state, message=message, stored_path="", finished_at=finished, updated_at=finished, seconds_left=None
    )
    return state


def _fail_if_stalled(job_id: int, now: datetime) -> None:
    stalled = ImportJob.objects.filter(pk=job_id, state=ImportState.RUNNING, updated_at__lt=now - STALLED_AFTER)
    path = stalled.values_list("stored_path", flat=True).first()
    message = (
        "The worker stopped during the import. The records read before it stopped are stored: "
        "upload the file again and they will count as duplicates."
    )
    failed = stalled.update(state=ImportState.FAILED, message=message, stored_path="", finished_at=now, updated_at=now)
    if failed and path:
        Path(path).unlink(missing_ok=True)
