# TOKI Dashboard: one image for the web server, the Celery worker and the scheduler.
FROM python:3.11-slim

# PYTHONPATH=/app: the project is imported from /app rather than from site-packages,
# so settings find templates/ and static/ next to it whichever program starts.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when it changes.
COPY pyproject.toml README.md ./
RUN pip install .

# Then the project itself. var/ (TOKI_VAR_DIR: collected static files, the beat
# schedule, the file cache, the proxy's spool, uploaded imports) is the only directory the
# unprivileged user writes to. var/spool and var/imports exist in the image so that the named
# volumes compose mounts there start out owned by that user.
COPY . .
RUN pip install --no-deps --force-reinstall . \
    && rm -rf build ./*.egg-info \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin toki \
    && mkdir -p /app/var/spool /app/var/imports \
    && chown -R toki:toki /app/var

USER toki
EXPOSE 8000

# docker-compose.yml runs the migrations and collectstatic before this (see its web service).
CMD ["gunicorn", "toki_dashboard.asgi:application", "-k", "uvicorn_worker.UvicornWorker", "--bind", "0.0.0.0:8000"]
