"""No module over 400 lines and no function over 60 lines, outside migrations and tests (issue 15).

A function counts from its `def` line to its last line, nested functions included (and each
nested function counts on its own too); a module counts all its lines.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# Modules and functions still over the limits while another branch splits them, as module paths
# or `path:function` (methods as `Class.method`); empty since the usage app's split was merged.
BEING_SPLIT: set[str] = set()


def python_files() -> list[str]:
    """The repository's Python files (tracked, or new and not ignored), migrations and tests left out."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.py"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    names = sorted({name for name in listing.split("\0") if name})
    return [
        name
        for name in names
        if (REPO_ROOT / name).is_file()
        and not {"migrations", "tests", ".venv"} & set(Path(name).parts[:-1])
        and Path(name).parts[0] != "tests"
    ]


def functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """(qualified name, lines) of every function and method in `tree`, nested ones too."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            found.append((name, (node.end_lineno or node.lineno) - node.lineno + 1))
            found += functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            found += functions(node, f"{prefix}{node.name}.")
        else:
            found += functions(node, prefix)
    return found


def oversized() -> list[str]:
    """Every module over MAX_MODULE_LINES and function over MAX_FUNCTION_LINES, as `place (lines)`."""
    found = []
    for name in python_files():
        text = (REPO_ROOT / name).read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            found.append((name, lines))
        for function, length in functions(ast.parse(text, filename=name)):
            if length > MAX_FUNCTION_LINES:
                found.append((f"{name}:{function}", length))
    return [f"{place} ({lines} lines)" for place, lines in found]


def test_the_size_check_reads_the_project_and_skips_migrations_and_tests():
    files = python_files()
    assert "billing/recompute.py" in files and "docs/build_api_md.py" in files and "bench/pages.py" in files
    assert not [name for name in files if "/migrations/" in name or name.startswith("tests/")]


def test_the_size_check_measures_nested_functions_and_methods():
    tree = ast.parse("class A:\n    def f(self):\n        def g():\n            pass\n\n        return g\n")
    assert functions(tree) == [("A.f", 5), ("A.f.g", 2)]


def test_no_module_over_400_lines_and_no_function_over_60():
    too_long = [place for place in oversized() if place.rsplit(" (", 1)[0] not in BEING_SPLIT]
    assert too_long == [], (
        f"split along the seams that exist (modules ≤ {MAX_MODULE_LINES} lines, functions ≤ {MAX_FUNCTION_LINES}): "
        + ", ".join(too_long)
    )


def test_the_being_split_list_names_only_what_is_still_too_long():
    still = {place.rsplit(" (", 1)[0] for place in oversized()}
    done = sorted(BEING_SPLIT - still)
    assert done == [], f"split already, remove from BEING_SPLIT: {', '.join(done)}"
