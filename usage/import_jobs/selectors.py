"""Reads of the Import page: an account's imports, one of them, its rejected lines."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from usage.import_jobs.models import ImportJob, ImportRejection
from usage.models import Account

RECENT_JOBS = 50


def recent_jobs(account: Account) -> QuerySet[ImportJob]:
    """The account's imports, running and past, newest first."""
    return ImportJob.objects.filter(account=account).select_related("created_by")[:RECENT_JOBS]


def job_of(account: Account, pk: int) -> ImportJob:
    """One of the account's imports (404 for another account's)."""
    return get_object_or_404(ImportJob.objects.select_related("created_by"), account=account, pk=pk)


def first_rejections(job: ImportJob, limit: int = 10) -> list[ImportRejection]:
    return list(ImportRejection.objects.filter(job=job).order_by("position", "pk")[:limit])


def rejection_rows(job: ImportJob) -> Iterator[list[str]]:
    """The rejected-lines CSV of a job: a header, then one row per line, in file order."""
    yield [job.position_label, "field", "reason", "kind"]
    rows = ImportRejection.objects.filter(job=job).order_by("position", "pk")
    listed = 0
    for position, field, reason, kind in rows.values_list("position", "field", "reason", "kind").iterator(2000):
        listed += 1
        yield [str(position), field or "(whole line)", reason, kind]
    if job.rejected > listed:
        yield ["", "", f"{job.rejected - listed:,} more not listed (the list keeps the first {listed:,})", ""]
