"""Rooms for third-party packages that import-linter cannot name yet (it refuses a module that
nothing imports): each may be imported only in its own room, found by walking the source.

    PYTHONPATH=. python -m pytest -q tests/test_layout.py

The rest of the layout (inspection imports no serving/training/qc, torch and Ultralytics only
through training/ultralytics_env.py, FastAPI only in serving) is in pyproject.toml's
[tool.importlinter], checked by `lint-imports` in `make lint`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("inspection", "serving", "training", "qc", "agent", "labeling")

# Third-party top-level module -> the one file or folder (relative to the repository) allowed
# to import it.
ROOMS = {
    "torchvision": "training/ultralytics_env.py",  # with torch and Ultralytics
    "label_studio_sdk": "labeling",  # the Label Studio bridge
}


def imported_top_names(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file, inside functions too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def in_room(path: Path, room: str) -> bool:
    return path == REPO / room or (REPO / room) in path.parents


@pytest.mark.parametrize("module", sorted(ROOMS))
def test_a_third_party_package_is_imported_only_in_its_room(module):
    offenders = [
        str(path.relative_to(REPO))
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))  # a package not written yet has none
        if module in imported_top_names(path) and not in_room(path, ROOMS[module])
    ]
    assert offenders == [], f"{module} is imported outside {ROOMS[module]}: move the import there"


def test_the_walker_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    import label_studio_sdk.converter\n    from torchvision import ops\n")
    assert imported_top_names(source) == {"label_studio_sdk", "torchvision"}


# What import-linter cannot see: a router calling a store's constructor (it may import a store's
# module for its enums and records). Routers take the stores AppState holds (serving/deps.py).
STORE_CLASS = ("Store", "Storage", "References", "Trails", "AlarmEvaluator", "Database", "Registry")


def stores_built(path: Path) -> list[str]:
    """Calls in the file to a class named like a store, and reads of an attribute `.db`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name[:1].isupper() and name.endswith(STORE_CLASS):
                found.append(f"{path.name}:{node.lineno} {name}(...)")
        elif isinstance(node, ast.Attribute) and node.attr == "db":
            found.append(f"{path.name}:{node.lineno} .db")
    return found


def test_no_router_builds_a_store_or_reads_the_database_handle():
    built = [hit for path in sorted((REPO / "serving" / "routers").glob("*.py")) for hit in stores_built(path)]
    assert built == [], "a router builds a store: hold it in serving/state.py's AppState and take it " \
                        f"through its Annotated dependency in serving/deps.py ({built})"


def test_the_store_finder_sees_a_store_built_from_the_state(tmp_path):
    source = tmp_path / "router.py"
    source.write_text("def f(state):\n    return JobStore(state.db).recent()\n")
    assert stores_built(source) == ["router.py:2 JobStore(...)", "router.py:2 .db"]
