"""Stage 2: validate documents against the JSON Schema, collecting every error.

A valid document is recognised by code generated from the schema
(``_schema_check``, see schema_codegen.py), which imports in milliseconds. A
document it refuses is checked again by jsonschema, which reports every
violation with its line and has the last word: should the two ever disagree,
what jsonschema accepts is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from fastjsonschema import JsonSchemaException

from reconciler.spec import _schema_check
from reconciler.spec.yamlfile import Document

SCHEMA_FILE = "backup-configuration.schema.json"
_generated_check: Callable[[Any], object] = _schema_check.validate


@cache
def configuration_schema() -> dict[str, Any]:
    """The configuration JSON Schema shipped with the package."""
    text = resources.files("reconciler").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(document: Document) -> list[str]:
    """Every schema violation in ``document`` as 'file:line: field.path: message'."""
    if passes_fast_check(document.data):
        return []
    from reconciler.spec.schema_report import report_errors

    return report_errors(document)


def passes_fast_check(data: Any) -> bool:
    try:
        _generated_check(data)
    except JsonSchemaException:
        return False
    return True


def format_path(path: tuple[Any, ...]) -> str:
    """A JSON path written as a user reads it: ``spec.sources[1].name``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
