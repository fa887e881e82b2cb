"""Every JSON Schema violation of a document, as sentences with file and line.

Imported only for a document the fast check (schema.py) refused: importing
jsonschema takes 0.15 s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from reconciler.spec.schema import configuration_schema, format_path, secret_field_names
from reconciler.spec.yamlfile import Document, line_of

SECRET_HINT = "a literal secret is not allowed here; use {env: NAME} or {file: PATH}"


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(configuration_schema())


def report_errors(document: Document) -> list[str]:
    """Every schema violation in ``document`` as 'file:line: field.path: message'."""
    errors = sorted(_validator().iter_errors(document.data), key=_error_order)
    found: list[tuple[int, str]] = []
    for error in _leaves(errors):
        path = tuple(error.absolute_path)
        line = line_of(document.data, _line_path(error), document.line)
        where = format_path(path) or "(document)"
        message = f"{document.file}:{line}: {where}: {_describe(error)}"
        if (line, message) not in found:
            found.append((line, message))
    # In the order a reader meets them in the file.
    return [message for _line, message in sorted(found, key=lambda item: item[0])]


def _error_order(error: ValidationError) -> tuple[str, str]:
    return (json.dumps(list(error.absolute_path), default=str), error.message)


def _leaves(errors: list[ValidationError]) -> Iterator[ValidationError]:
    for error in errors:
        if error.context:
            # anyOf/oneOf: report what the closest alternative says, not the umbrella.
            yield from _leaves(sorted(error.context, key=_error_order))
        else:
            yield error


def _line_path(error: ValidationError) -> tuple[str | int, ...]:
    path: tuple[str | int, ...] = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = _unexpected(error)
        if extra:
            return (*path, extra[0])
    return path


def _unexpected(error: ValidationError) -> list[str]:
    allowed = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
    instance = error.instance if isinstance(error.instance, dict) else {}
    return sorted(k for k in instance if k not in allowed)


def _is_secret_ref(schema: Any) -> bool:
    return isinstance(schema, dict) and configuration_schema()["$defs"].get("secretRef") == schema


def _describe(error: ValidationError) -> str:
    kind = error.validator
    value = error.validator_value
    instance = error.instance
    if _is_secret_ref(error.schema) and not isinstance(instance, dict):
        return SECRET_HINT
    under_secret = bool(
        secret_field_names() & {p for p in error.absolute_path if isinstance(p, str)}
    )
    if under_secret:
        # Whatever was written under a secret field may be a secret: never echo it.
        instance = "(value not shown)"
    if kind == "additionalProperties" and under_secret:
        # `password: {Sup3rS3cret}` is a mapping whose key is the secret.
        return "unknown field (its name is not shown); use {env: NAME} or {file: PATH}"
    if kind == "additionalProperties":
        names = ", ".join(repr(n) for n in _unexpected(error))
        return (
            f"unknown field {names}" if len(_unexpected(error)) == 1 else f"unknown fields {names}"
        )
    if kind == "required" and isinstance(value, list):
        present = instance if isinstance(instance, dict) else {}
        missing = [n for n in value if n not in present]
        return f"missing required field {', '.join(repr(n) for n in missing)}"
    if kind == "type":
        return f"must be {_type_phrase(value)}, not {_type_of(instance)} {_show(instance)}".rstrip()
    schema = error.schema if isinstance(error.schema, dict) else {}
    if kind in ("minProperties", "maxProperties"):
        options = list(schema.get("properties", {}))
        if schema.get("maxProperties") == 1 and options:
            return f"must set exactly one of {', '.join(options)}"
        if _is_source(schema):
            return "must set exactly one of files, sqlite, command (besides name)"
    if kind == "const":
        return f"must be {value!r}, not {_show(instance)}"
    if kind == "enum" and isinstance(value, list):
        return f"must be one of {', '.join(repr(v) for v in value)}, not {_show(instance)}"
    if kind == "minimum":
        return f"{_show(instance)} is less than the minimum of {value}"
    if kind == "maximum":
        return f"{_show(instance)} is more than the maximum of {value}"
    if kind == "pattern":
        return f"{_show(instance)} is not valid: {_pattern_hint(error)}"
    if kind == "minItems":
        return f"must have at least {value} item{'s' if value != 1 else ''}"
    if kind == "maxItems":
        return f"must have at most {value} items"
    if kind == "minLength":
        return "must not be empty" if value == 1 else f"must be at least {value} characters"
    if kind == "maxLength":
        return f"must be at most {value} characters"
    return error.message


def _is_source(schema: Any) -> bool:
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return {"files", "sqlite", "command"} <= set(props)


def _pattern_hint(error: ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("x-pattern-hint")
    if isinstance(hint, str):
        return hint
    return f"it must match {error.validator_value}"


def _type_phrase(value: Any) -> str:
    names = value if isinstance(value, list) else [value]
    words = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "null": "null",
    }
    return " or ".join(words.get(str(n), str(n)) for n in names)


def _type_of(instance: Any) -> str:
    if isinstance(instance, bool):
        return "the boolean"
    if isinstance(instance, int | float):
        return "the number"
    if isinstance(instance, str):
        return "the string"
    if isinstance(instance, dict):
        return "a mapping"
    if isinstance(instance, list):
        return "a list"
    return "null" if instance is None else type(instance).__name__


def _show(instance: Any) -> str:
    if isinstance(instance, dict | list):
        return ""
    text = json.dumps(instance, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
