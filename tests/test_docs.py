"""The repository explains itself: every reference points into it, and nothing built is tracked."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# The name of a design document that was never part of the repository; built from parts so
# that this file does not cite it either.
ABSENT_DOCUMENT = "DESIGN" + "." + "md"


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True, capture_output=True).stdout.decode()
    return [name for name in listing.split("\0") if name]


def test_no_tracked_file_cites_a_document_outside_the_repository():
    citing = []
    for name in tracked_files():
        path = REPO_ROOT / name
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        if ABSENT_DOCUMENT.encode() in path.read_bytes():
            citing.append(name)
    assert citing == [], f"{ABSENT_DOCUMENT} is not in the repository; point into docs/ or the README: {citing}"


def test_build_metadata_is_not_tracked():
    built = [name for name in tracked_files() if ".egg-info/" in name or name.endswith(".egg-info")]
    assert built == []
    assert "*.egg-info/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def load_api_md_builder():
    spec = importlib.util.spec_from_file_location("build_api_md", REPO_ROOT / "docs" / "build_api_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_matches_the_code():
    """docs/api.md's generated blocks equal what docs/build_api_md.py makes of the code now;
    after changing an endpoint, a command or a setting, run `.venv/bin/python docs/build_api_md.py`."""
    builder = load_api_md_builder()
    written = builder.API_MD.read_text()
    fresh = builder.render(written)
    assert fresh == written, "docs/api.md is out of date: run .venv/bin/python docs/build_api_md.py"


def test_the_api_reference_is_written_in_english_whatever_language_is_active():
    # A test before this one that served a page in Chinese left Chinese active in the thread,
    # and the reference came out with Chinese scope labels (seen with test_partitions first).
    from django.utils import translation

    builder = load_api_md_builder()
    written = builder.API_MD.read_text()
    with translation.override("zh-hans"):
        assert builder.render(written) == written


def test_api_reference_lists_every_endpoint_command_and_variable():
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    from django.core.management import get_commands

    from toki_dashboard.api import api

    for path, operations in api.get_openapi_schema()["paths"].items():
        for method in operations:
            assert f"### {method.upper()} {path}\n" in text
    for name, app in get_commands().items():
        if app in ("usage", "billing"):
            assert f"### {name}\n" in text
    for variable in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROXY_MAX_BODY_BYTES", "DASHBOARD_TIME_ZONE"):
        assert f"| `{variable}` |" in text


def test_the_reference_builder_refuses_a_variable_without_a_description(monkeypatch):
    builder = load_api_md_builder()
    monkeypatch.delitem(builder.ENVIRONMENT, "REDIS_URL")
    with pytest.raises(SystemExit, match="REDIS_URL"):
        builder.environment_block()


# --- docs/architecture.md names only what exists -----------------------------------------

ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"
PROJECT_PACKAGES = ("usage", "billing", "toki_dashboard", "tests")
DOTTED = re.compile(r"^[a-z_][a-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+(:[A-Za-z_]\w*)?$")
SETTING = re.compile(r"^[A-Z][A-Z0-9_]+$")


def architecture_text() -> str:
    return ARCHITECTURE.read_text()


def cited(text: str) -> list[str]:
    """Every `code` span outside fenced blocks, `()` dropped from calls."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return [span.removesuffix("()") for span in re.findall(r"`([^`\n]+)`", prose)]


def resolve(dotted: str) -> object:
    """The module or attribute a dotted name (or `module:attribute`) names; raises if none."""
    path = dotted.replace(":", ".").split(".")
    for cut in range(len(path), 0, -1):
        try:
            found = importlib.import_module(".".join(path[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in path[cut:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


def test_the_architecture_document_has_its_diagram():
    assert re.search(r"^```mermaid\n.*?(record_usage).*?^```", architecture_text(), flags=re.S | re.M)


def test_every_module_and_name_the_architecture_document_cites_exists():
    missing = []
    for span in cited(architecture_text()):
        if DOTTED.match(span) and span.split(".")[0] in PROJECT_PACKAGES:
            try:
                resolve(span)
            except (ImportError, AttributeError) as exc:
                missing.append(f"{span}: {exc}")
    assert missing == []


def test_every_file_and_folder_the_architecture_document_cites_exists():
    spans = [
        span
        for span in cited(architecture_text())
        if "/" in span and not span.startswith("/") and " " not in span and "://" not in span
    ]
    assert spans, "the document cites no file"
    assert [span for span in spans if not (REPO_ROOT / span).exists()] == []


def test_every_setting_the_architecture_document_cites_exists(settings):
    environment = (REPO_ROOT / "docs" / "api.md").read_text()
    unknown = [
        span
        for span in cited(architecture_text())
        if SETTING.match(span) and not hasattr(settings, span) and f"| `{span}` |" not in environment
    ]
    assert unknown == []


def test_the_architecture_document_lists_every_celery_task_and_beat_entry(settings):
    text = architecture_text()
    tasks = [
        f"{module.__name__}.{name}"
        for module in (importlib.import_module("usage.tasks"), importlib.import_module("billing.tasks"))
        for name, value in vars(module).items()
        if hasattr(value, "delay") and getattr(value, "name", "") == f"{module.__name__}.{name}"
    ]
    assert len(tasks) > 10
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled <= set(tasks)
    assert [task for task in tasks if f"`{task}`" not in text] == []


def test_the_name_check_catches_a_name_that_does_not_exist():
    with pytest.raises(AttributeError):
        resolve("usage.services.record_usage_that_never_was")
    with pytest.raises((ImportError, AttributeError)):
        resolve("usage.no_such_module.function")


# --- Links between the documents ------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors_of(markdown: str) -> set[str]:
    """GitHub's anchors of a document's headings."""
    headings = re.findall(r"^#{1,6} (.+)$", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize(
    "document", ["README.md", "docs/api.md", "docs/architecture.md", "docs/import.md"], ids=lambda d: d
)
def test_every_relative_link_of_a_document_leads_somewhere(document):
    source = REPO_ROOT / document
    broken = []
    for target in LINK.findall(source.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        path, _, fragment = target.partition("#")
        file = (source.parent / path).resolve() if path else source
        missing_anchor = file.exists() and file.suffix == ".md" and fragment != ""
        if not file.exists() or (missing_anchor and fragment not in anchors_of(file.read_text())):
            broken.append(target)
    assert broken == []
