"""Imports from the browser: an uploaded file streamed to disk, a job row, a Celery task
that runs the importer and keeps the row's progress current, and the rejected lines."""
