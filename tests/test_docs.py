"""The repository explains itself: every reference points into it, and nothing built is tracked."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
