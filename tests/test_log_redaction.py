"""No secret in any log record: what the redaction takes out, and that every record of the
process goes through it, whichever logger and handler (tests/test_log_scenario.py runs
the whole product and greps its logs)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toki_dashboard.redaction import REDACTED, redact

TOKEN = "toki_Q2hhbmdlTWUtMDEyMzQ1Njc4OWFiY2RlZg"
KEY = "sk-proj-Abc123Def456Ghi789Jkl012"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Unexpected auth - 'Token {TOKEN}'", TOKEN),
        (f"Authorization: Bearer {KEY}", KEY),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        (f"X-Toki-Token: {TOKEN}", TOKEN),
        ("api-key: 0f3a9bc2e4d5f6a7b8c9d0e1", "0f3a9bc2e4d5f6a7b8c9d0e1"),
        ("GET https://up.example/v1/models?key=hunter2-very-secret&limit=5", "hunter2-very-secret"),
        ("POST /v1/x?api_key=abc123&token=def456", "abc123"),
        ("POST /v1/x?api_key=abc123&token=def456", "def456"),
        ("postgres://toki:correct-horse@db:5432/toki", "correct-horse"),
        ("smtp://alerts:mail-password-1@smtp.example:587", "mail-password-1"),
        ('{"access_token": "console-access-token-0123456789abcdef"}', "console-access-token-0123456789abcdef"),
        ("{'password': 'pw-in-a-dict'}", "pw-in-a-dict"),
        ("Cookie: sessionid=abc123def; csrftoken=xyz789", "abc123def"),
        ("Cookie: sessionid=abc123def; csrftoken=xyz789", "xyz789"),
        (f"a key in prose {KEY} and more", KEY),
        (
            "something random gAAAAABmZ3Jl4xQ0V1c2VyX2tleV9mb3JfdGVzdHNfb25seQ here",
            "gAAAAABmZ3Jl4xQ0V1c2VyX2tleV9mb3JfdGVzdHNfb25seQ",
        ),
    ],
)
def test_secrets_are_redacted(text, secret):
    redacted = redact(text)

    assert secret not in redacted
    assert REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "proxy: 12 record(s) spooled; request proxy-0123456789abcdef0123456789abcdef",
        "model Qwen2.5-72B-Instruct-GPTQ-Int4 prompt_tokens=5 max_tokens=10",
        "Token allocation finished for 3 purchases",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "Key (account_id, request_id)=(1, abc) already exists.",
    ],
)
def test_ordinary_log_lines_are_left_alone(text):
    assert redact(text) == text


def _emitted(logger: logging.Logger, emit) -> str:
    """What a plain handler on `logger` writes for the records `emit` makes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger.addHandler(handler)
    try:
        emit()
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_every_record_is_redacted_before_any_handler_sees_it():
    # A logger that does not propagate and has a handler of its own, as uvicorn's and
    # Celery's are: the redaction happens when the record is made, not in a handler.
    logger = logging.getLogger("some.library")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)

    def emit() -> None:
        logger.debug("calling %s with %r", f"https://up.example/v1?key={KEY}", {"authorization": f"Bearer {KEY}"})
        try:
            raise ConnectionError(f"could not reach https://up.example/v1?token={TOKEN}")
        except ConnectionError:
            logger.exception("request failed for %s", TOKEN)
        logger.info("stack", stack_info=True)

    try:
        output = _emitted(logger, emit)
    finally:
        logger.propagate = True

    assert KEY not in output and TOKEN not in output
    assert "ConnectionError: could not reach https://up.example/v1?token=[redacted]" in output
    assert output.count(REDACTED) >= 4


def test_formatters_that_read_the_arguments_still_get_them_in_place():
    # uvicorn's access formatter unpacks record.args: they keep their number and types.
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/proxy/v1/models?key={KEY}", "1.1", 200),
        None,
    )

    assert len(record.args) == 5
    assert record.args[2] == "/proxy/v1/models?key=[redacted]" and record.args[4] == 200
    assert KEY not in record.getMessage()


@pytest.mark.parametrize(
    "start",
    [
        pytest.param("import django; django.setup()", id="manage.py and the web server (django.setup)"),
        pytest.param("from toki_dashboard.celery import app; app.conf.broker_url", id="celery worker and beat"),
    ],
)
def test_every_kind_of_process_redacts_once_it_loads_the_settings(tmp_path, start):
    code = f"{start}\nimport logging\nlogging.getLogger('anything').error('calling with Bearer {KEY} and {TOKEN}')"
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "toki_dashboard.settings",
        "SECRET_KEY": "a-test-secret-key",
        "TOKI_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert "calling with Bearer [redacted]" in result.stderr
    assert KEY not in result.stderr and TOKEN not in result.stderr
