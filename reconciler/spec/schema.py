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


@cache
def secret_field_names() -> frozenset[str]:
    """Every field name whose value the schema declares a secret reference.

    Read from the schema, not listed by hand, so a secret field added to the
    schema is kept out of every error message without touching this code."""
    schema = configuration_schema()
    return frozenset(_secret_fields(schema, schema["$defs"]["secretRef"]))


def _secret_fields(node: Any, secret_ref: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= _secret_fields(item, secret_ref)
    elif isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            found |= {n for n, s in properties.items() if _refers_to_secret(s, secret_ref)}
        for value in node.values():
            found |= _secret_fields(value, secret_ref)
    return found


def _refers_to_secret(schema: Any, secret_ref: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("$ref") == "#/$defs/secretRef" or schema == secret_ref:
        return True
    # A secret reference may be one choice among others (`oneOf: [secretRef, ...]`).
    choices = [c for k in ("anyOf", "oneOf", "allOf") for c in schema.get(k, [])]
    return any(_refers_to_secret(c, secret_ref) for c in choices)


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
