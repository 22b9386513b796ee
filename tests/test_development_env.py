"""`make run` makes its own random development secrets once, under var/, and every process
of the checkout reads them (manage.py in a second terminal too); no key is written in the
source. The compose file gives web and worker one spool, kept across recreations."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

from toki_dashboard.config import dashboard_url, require_secret_key

REPO_ROOT = Path(__file__).resolve().parent.parent


def make_dev_env(var: Path) -> Path:
    """The rule `make run` depends on, run on its own into `var`."""
    subprocess.run(["make", "-s", "dev-env", f"TOKI_VAR_DIR={var}"], cwd=REPO_ROOT, check=True, capture_output=True)
    return var / "development.env"


def values(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def manage(var: Path, code: str, **env: str) -> str:
    """manage.py as a second terminal runs it: nothing exported but PATH (and where var/ is)."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v0", "-c", code],
        cwd=REPO_ROOT,
        env={"PATH": os.environ["PATH"], "TOKI_VAR_DIR": str(var), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_make_run_writes_random_development_secrets_once_and_keeps_them(tmp_path):
    path = make_dev_env(tmp_path / "var")
    first = path.read_text()
    again = make_dev_env(tmp_path / "var").read_text()
    elsewhere = values(make_dev_env(tmp_path / "other"))

    assert first == again  # kept: sessions and stored credentials survive the next `make run`
    made = values(path)
    assert made["DEBUG"] == "true"
    assert len(made["SECRET_KEY"]) >= 50 and len(made["FIELD_ENCRYPTION_KEY"]) >= 32
    assert made["SECRET_KEY"] != elsewhere["SECRET_KEY"]
    assert made["FIELD_ENCRYPTION_KEY"] != elsewhere["FIELD_ENCRYPTION_KEY"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # secrets: readable by their owner only


def test_manage_py_in_a_second_terminal_reads_them_without_exports(tmp_path):
    made = values(make_dev_env(tmp_path / "var"))
    code = (
        "from django.conf import settings; from toki_dashboard import crypto; "
        "print(settings.DEBUG, settings.SECRET_KEY, settings.FIELD_ENCRYPTION_KEY, "
        "crypto.decrypt(crypto.encrypt('credential')))"
    )

    assert manage(tmp_path / "var", code).split() == [
        "True",
        made["SECRET_KEY"],
        made["FIELD_ENCRYPTION_KEY"],
        "credential",
    ]
    # What the environment sets wins over the file.
    assert manage(
        tmp_path / "var", "from django.conf import settings; print(settings.SECRET_KEY)", SECRET_KEY="own"
    ) == ("own")


def test_no_secret_key_is_made_up_in_development_either():
    with pytest.raises(ImproperlyConfigured, match=r"make run.*development\.env"):
        require_secret_key({}, debug=True)


def test_the_source_holds_no_development_key():
    for source in REPO_ROOT.glob("toki_dashboard/*.py"):
        assert "insecure-development-key" not in source.read_text(), source


def test_web_and_worker_share_one_spool_volume_that_outlives_their_containers():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    spool = "/app/var/spool"  # TOKI_PROXY_SPOOL_DIR in the image: /app is the project, var/spool the default

    def volume_at(service: str) -> str:
        mounts = [m.split(":") for m in services[service].get("volumes", [])]
        return next(source for source, target, *_ in mounts if target == spool)

    assert volume_at("web") == volume_at("worker")
    assert volume_at("web") in compose["volumes"]  # a named volume: recreating a container keeps it
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "mkdir -p /app/var/spool" in dockerfile and "chown -R toki:toki /app/var" in dockerfile


def make_server_env(var: Path, port: str) -> None:
    """The rule `make run` runs at each start to record the port it serves."""
    subprocess.run(
        ["make", "-s", "server-env", f"PORT={port}", f"TOKI_VAR_DIR={var}"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )


PAGE_URL = (
    "from billing.notify.email import page_url; from usage.models import Account; "
    "print(page_url(['billing:alerts'], Account(slug='acme')))"
)


def test_alert_email_links_use_the_port_make_run_serves_in_every_process(tmp_path):
    make_dev_env(tmp_path / "var")
    make_server_env(tmp_path / "var", "8111")

    # A second terminal (nothing exported) and the worker honcho starts (TOKI_PORT, and its own PORT).
    assert manage(tmp_path / "var", PAGE_URL) == "http://127.0.0.1:8111/alerts/?account=acme"
    assert manage(tmp_path / "var", PAGE_URL, TOKI_PORT="8111", PORT="5100").startswith("http://127.0.0.1:8111/")
    # DASHBOARD_URL, when set, is the address people open: it wins.
    assert manage(tmp_path / "var", PAGE_URL, DASHBOARD_URL="https://toki.example.com/").startswith(
        "https://toki.example.com/alerts/"
    )


def test_without_make_run_the_dashboard_url_follows_port_else_8000():
    assert dashboard_url({"PORT": "9000"}) == "http://127.0.0.1:9000"
    assert dashboard_url({}) == "http://127.0.0.1:8000"
    with pytest.raises(ImproperlyConfigured, match="PORT='eighty' is not a port number"):
        dashboard_url({"PORT": "eighty"})
