"""Planning is pure: the planner, its policies and the values they work on never
import the code that reads storage, loads keys, renders or saves plans."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RECONCILE = Path(__file__).resolve().parents[2] / "reconciler" / "reconcile"
PLANNING = sorted(
    [
        RECONCILE / "plan.py",
        RECONCILE / "state.py",
        RECONCILE / "actions.py",
        *(RECONCILE / "policy").glob("*.py"),
    ]
)
FORBIDDEN = (
    "reconciler.reconcile.observe",
    "reconciler.reconcile.session",
    "reconciler.reconcile.apply",
    "reconciler.reconcile.prepared",
    "reconciler.reconcile.rewrap_inputs",
    "reconciler.reconcile.render",
    "reconciler.reconcile.savedplan",
    "reconciler.repository.store",
    "reconciler.storage",
    "reconciler.backup",
    "reconciler.sources",
    "reconciler.cli",
    "reconciler.daemon",
)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", PLANNING, ids=lambda p: str(p.relative_to(RECONCILE)))
def test_planning_modules_import_no_io_rendering_or_plan_files(path: Path) -> None:
    bad = sorted(
        module
        for module in imported_modules(path)
        if any(module == f or module.startswith(f + ".") for f in FORBIDDEN)
    )
    assert bad == [], f"{path.name} imports {bad}"


def test_the_policies_are_all_checked() -> None:
    names = {p.name for p in PLANNING}
    assert {"schedule.py", "retention.py", "verification.py", "head.py", "plan.py"} <= names
