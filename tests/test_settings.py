"""The environment (docs/api.md, Environment variables) becomes settings, and nonsense fails
loudly, naming the variable."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from toki_dashboard.config import (
    database_from_url,
    email_from_url,
    log_level,
    parse_bool,
    require_secret_key,
    split_list,
    time_zone_name,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


# --- DATABASE_URL --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("mysql://toki:pw@db:3306/toki", id="unknown-scheme"),
        pytest.param("postgres://toki:pw@db:5432/", id="postgres-without-name"),
        pytest.param("postgres://toki:pw@db:5432", id="postgres-without-path"),
        pytest.param("sqlite://", id="sqlite-without-path"),
        pytest.param("sqlite:///:memory:", id="sqlite-in-memory"),
        pytest.param("postgres://toki:pw@db:port/toki", id="garbage-port"),
        pytest.param("not a url at all", id="garbage"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_database_url_is_refused_naming_database_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url(url, base_dir=tmp_path)


def test_absolute_sqlite_url_keeps_its_path(tmp_path: Path) -> None:
    db_file = tmp_path / "elsewhere" / "toki.sqlite3"

    config = database_from_url(f"sqlite:///{db_file}", base_dir=Path("/unused"))

    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(db_file)


def test_relative_sqlite_path_resolves_under_the_base_dir(tmp_path: Path) -> None:
    config = database_from_url("sqlite:///var/toki.sqlite3", base_dir=tmp_path)

    assert config["NAME"] == str(tmp_path / "var" / "toki.sqlite3")


def test_sqlite_gets_wal_and_immediate_transactions(tmp_path: Path) -> None:
    config = database_from_url("sqlite:///toki.sqlite3", base_dir=tmp_path)

    assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]
    assert config["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_postgres_connections_never_jit_compile_the_pages_queries(tmp_path: Path) -> None:
    """JIT compiling cost 130-150 ms per month-wide aggregate at 10M records, more than the query."""
    config = database_from_url("postgres://toki:toki@127.0.0.1:5432/toki", base_dir=tmp_path)

    assert "-c jit=off" in config["OPTIONS"]["options"]


def test_a_web_process_pools_its_postgres_connections_and_keeps_none_per_thread(tmp_path: Path) -> None:
    config = database_from_url("postgres://toki:toki@127.0.0.1:5432/toki", base_dir=tmp_path, pool_size=6)

    assert config["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 6, "timeout": 10}
    assert config["CONN_MAX_AGE"] == 0  # a request's end gives the connection back to the pool


def test_workers_and_commands_keep_a_persistent_postgres_connection_and_no_pool(tmp_path: Path) -> None:
    config = database_from_url("postgres://toki:toki@127.0.0.1:5432/toki", base_dir=tmp_path)

    assert "pool" not in config["OPTIONS"]
    assert config["CONN_MAX_AGE"] == 60


def test_sqlite_has_no_pool_even_in_a_web_process(tmp_path: Path) -> None:
    config = database_from_url("sqlite:///toki.sqlite3", base_dir=tmp_path, pool_size=6)

    assert "pool" not in config["OPTIONS"]


@pytest.mark.django_db
def test_the_jit_setting_is_in_force_on_the_connection_the_tests_use() -> None:
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW jit")
            assert cursor.fetchone()[0] == "off"
    else:
        assert "options" not in connection.settings_dict["OPTIONS"]  # SQLite has no JIT to turn off


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "pgsql"])
def test_postgres_url_parses_every_part(scheme: str, tmp_path: Path) -> None:
    config = database_from_url(f"{scheme}://toki:p%40ss@db.internal:6543/toki_prod", base_dir=tmp_path)

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["USER"], config["PASSWORD"]) == ("toki_prod", "toki", "p@ss")
    assert (config["HOST"], int(config["PORT"])) == ("db.internal", 6543)
    assert config["CONN_HEALTH_CHECKS"] is True


# --- EMAIL_URL ------------------------------------------------------------------------


def test_smtp_email_url_gives_host_port_and_credentials() -> None:
    config = email_from_url("smtp://alerts:s3cret@mail.example.com:2525")

    assert config["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (config["EMAIL_HOST"], config["EMAIL_PORT"]) == ("mail.example.com", 2525)
    assert (config["EMAIL_HOST_USER"], config["EMAIL_HOST_PASSWORD"]) == ("alerts", "s3cret")
    assert config["EMAIL_TIMEOUT"] > 0


def test_smtp_email_url_without_credentials_is_the_mail_catcher() -> None:
    config = email_from_url("smtp://mailpit:1025")

    assert (config["EMAIL_HOST"], config["EMAIL_PORT"]) == ("mailpit", 1025)
    assert not config["EMAIL_HOST_USER"]


def test_console_email_url_prints_mail() -> None:
    assert email_from_url("console://") == {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}


def test_file_email_url_writes_to_the_folder() -> None:
    config = email_from_url("file:///srv/toki/mail")

    assert config["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend"
    assert config["EMAIL_FILE_PATH"] == "/srv/toki/mail"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("imap://mail.example.com", id="unknown-scheme"),
        pytest.param("file://", id="file-without-folder"),
        pytest.param("smtp://user:pw@mail.example.com:port", id="garbage-port"),
        pytest.param("mail.example.com", id="garbage"),
    ],
)
def test_bad_email_url_is_refused_naming_email_url(url: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL"):
        email_from_url(url)


# --- DEBUG, lists, SECRET_KEY ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("1", True), ("On", True), ("false", False), ("0", False)]
)
def test_boolean_values_parse(raw: str, expected: bool) -> None:
    assert parse_bool("DEBUG", raw, default=not expected) is expected


def test_unset_boolean_takes_the_default() -> None:
    assert parse_bool("DEBUG", None, default=True) is True


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled"])
def test_bad_debug_value_is_refused_naming_debug(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        parse_bool("DEBUG", raw, default=False)


def test_comma_lists_drop_blanks_and_spaces() -> None:
    assert split_list(" a.example.com, ,b.example.com ", default=[]) == ["a.example.com", "b.example.com"]
    assert split_list(None, default=["localhost"]) == ["localhost"]


def test_missing_secret_key_is_refused_outside_debug() -> None:
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        require_secret_key({}, debug=False)


def test_a_given_secret_key_is_used() -> None:
    assert require_secret_key({"SECRET_KEY": "given"}, debug=False) == "given"


# --- The real settings module, in a clean process -------------------------------------------


def _manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run manage.py with only PATH inherited, so the developer's environment cannot leak in."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _production_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "example.com",
        "FIELD_ENCRYPTION_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'toki.sqlite3'}",
        "TOKI_VAR_DIR": str(tmp_path),
    }


def test_production_without_secret_key_refuses_to_start_naming_secret_key(tmp_path: Path) -> None:
    env = _production_env(tmp_path)
    del env["SECRET_KEY"]

    result = _manage(["check"], env)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line
    assert "SECRET_KEY is not set" in last_line


def test_bad_debug_value_stops_the_settings_naming_debug(tmp_path: Path) -> None:
    env = _production_env(tmp_path) | {"DEBUG": "perhaps"}

    result = _manage(["check"], env)

    assert result.returncode != 0
    assert "DEBUG='perhaps' is not a boolean" in result.stderr.strip().splitlines()[-1]


def test_production_settings_pass_the_deployment_checklist(tmp_path: Path) -> None:
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], _production_env(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_an_unknown_dashboard_time_zone_is_refused_naming_the_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match="DASHBOARD_TIME_ZONE"):
        time_zone_name("DASHBOARD_TIME_ZONE", "Mars/Base")


def test_a_known_time_zone_is_accepted() -> None:
    assert time_zone_name("DASHBOARD_TIME_ZONE", "Asia/Shanghai") == "Asia/Shanghai"


def test_a_bad_log_level_is_refused_naming_log_level() -> None:
    with pytest.raises(ImproperlyConfigured, match="LOG_LEVEL"):
        log_level("chatty")


def test_smtp_email_url_without_a_host_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL needs a host"):
        email_from_url("smtp://")


@pytest.mark.parametrize("raw", ["0", "-2", "three"])
def test_a_bad_raw_retention_stops_the_settings_naming_raw_retention_months(tmp_path: Path, raw: str) -> None:
    result = _manage(["check"], _production_env(tmp_path) | {"RAW_RETENTION_MONTHS": raw})

    assert result.returncode != 0
    assert f"RAW_RETENTION_MONTHS={raw!r} is not a positive whole number" in result.stderr.strip().splitlines()[-1]


def test_raw_retention_is_unset_by_default_and_read_from_the_environment(tmp_path: Path) -> None:
    show = ["shell", "-c", "from django.conf import settings; print(repr(settings.RAW_RETENTION_MONTHS))"]

    assert _manage(show, _production_env(tmp_path)).stdout.strip().splitlines()[-1] == "None"
    assert (
        _manage(show, _production_env(tmp_path) | {"RAW_RETENTION_MONTHS": "13"}).stdout.strip().splitlines()[-1]
        == "13"
    )
