"""The storage layer is the bottom of the package: it imports nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

import reconciler.storage

HIGHER_LAYERS = ("spec", "repository", "reconcile", "backup", "cli", "daemon")


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names,
    including imports inside functions and under TYPE_CHECKING."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_storage_module_imports_a_higher_layer() -> None:
    package = Path(reconciler.storage.__file__).parent
    upward = {
        f"{path.name}: {name}"
        for path in sorted(package.glob("*.py"))
        for name in _imported_modules(path)
        if name.split(".")[:2] in (["reconciler", layer] for layer in HIGHER_LAYERS)
    }
    assert upward == set()
