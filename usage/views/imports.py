"""The Import page (finance): upload a usage export, follow its import, download its rejected lines.

The upload is parsed by `ImportUploadHandler`, which writes the file to disk in chunks; it
must be installed before anything reads the body, so the upload view turns off the CSRF
middleware's early read and checks the token itself, after installing the handler.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect
from django.views.decorators.csrf import csrf_exempt

from toki_dashboard.htmx import render_page
from toki_dashboard.roles import Role, role_required
from usage.import_jobs import selectors
from usage.import_jobs.forms import ImportForm
from usage.import_jobs.services import start_import
from usage.import_jobs.upload import ImportUploadHandler, StoredUpload, too_large_message
from usage.tenancy import current_account_or_none

POLL_SECONDS = 1


def _page(request: HttpRequest, form: ImportForm, *, status: int = 200, problem: str = "") -> HttpResponse:
    account = current_account_or_none(request)
    jobs = list(selectors.recent_jobs(account)) if account else []
    context: dict[str, Any] = {
        "account": account,
        "form": form,
        "problem": problem,
        "max_upload_mb": settings.IMPORT_MAX_UPLOAD_MB,
        "jobs": jobs,
        "any_running": any(not job.finished for job in jobs),
        "poll_seconds": POLL_SECONDS,
    }
    return render_page(request, "usage/imports.html", "usage/partials/imports_jobs.html", context, status=status)


def _discard_uploads(request: HttpRequest) -> None:
    for upload in request.FILES.values():
        if isinstance(upload, StoredUpload):
            upload.discard()


def _csrf_refusal(request: HttpRequest) -> HttpResponse | None:
    """The CSRF middleware's answer to this POST (reading the body through the handler in
    place), or None when the token is right."""
    return CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, _upload, (), {})


@csrf_exempt  # the token is checked in _upload, once the streaming handler is in place
@role_required(Role.FINANCE)
def imports(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        handler = ImportUploadHandler(request)
        request.upload_handlers = [handler]
        return _upload(request, handler)
    return _page(request, ImportForm())


def _upload(request: HttpRequest, handler: ImportUploadHandler) -> HttpResponse:
    if (refusal := _csrf_refusal(request)) is not None:
        _discard_uploads(request)
        return refusal
    account = current_account_or_none(request)
    form = ImportForm(request.POST, request.FILES)
    if handler.too_large:
        _discard_uploads(request)
        return _page(request, ImportForm(), status=413, problem=too_large_message())
    if account is None or not form.is_valid():
        _discard_uploads(request)
        problem = "" if account else "No account exists yet: create one before importing."
        return _page(request, form, status=400, problem=problem)
    job = start_import(account, request.user, form.cleaned_data["file"], form.cleaned_data["import_format"])
    return redirect("usage:import_detail", pk=job.pk)


@role_required(Role.FINANCE)
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    account = current_account_or_none(request)
    if account is None:
        return redirect("usage:imports")
    job = selectors.job_of(account, pk)
    context = {
        "account": account,
        "job": job,
        "rejections": selectors.first_rejections(job) if job.finished else [],
        "poll_seconds": POLL_SECONDS,
    }
    return render_page(request, "usage/import_detail.html", "usage/partials/import_progress.html", context)


class _Echo:
    def write(self, value: str) -> str:
        return value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def _csv_lines(rows: Iterator[list[str]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow([_cell(cell) for cell in row])


@role_required(Role.FINANCE)
def import_rejections_csv(request: HttpRequest, pk: int) -> HttpResponseBase:
    account = current_account_or_none(request)
    if account is None:
        return redirect("usage:imports")
    job = selectors.job_of(account, pk)
    response = StreamingHttpResponse(_csv_lines(selectors.rejection_rows(job)), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-rejected.csv"'
    return response
