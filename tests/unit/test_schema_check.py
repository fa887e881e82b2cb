"""The generated fast check must say exactly what jsonschema says about validity.

jsonschema has the last word on a document the fast check refuses, so a
disagreement there only costs time; a document the fast check accepts and
jsonschema would refuse would get through unchecked. Both are asserted
absent over the shipped examples and thousands of variants of them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.spec import schema_codegen
from reconciler.spec.schema import configuration_schema, passes_fast_check
from reconciler.spec.yamlfile import parse_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
WRONG_VALUES: tuple[Any, ...] = (
    "",
    "text",
    -1,
    0,
    1,
    10_000_000,
    1.5,
    True,
    None,
    [],
    {},
    [1],
    {"x": 1},
)


def plain(data: Any) -> Any:
    return json.loads(json.dumps(data))


def example_documents() -> list[Any]:
    documents = [plain(d.data) for path in EXAMPLES for d in parse_file(path)]
    assert len(documents) >= 3
    return documents


def places(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from places(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from places(value, (*path, index))


def get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def variants(document: Any) -> Iterator[Any]:
    """Each place deleted, replaced by values of every type, or given an unknown field."""
    for path in places(document):
        if path:
            parent = get(document, path[:-1])
            if isinstance(parent, dict):
                changed = copy.deepcopy(document)
                del get(changed, path[:-1])[path[-1]]
                yield changed
            for value in WRONG_VALUES:
                changed = copy.deepcopy(document)
                get(changed, path[:-1])[path[-1]] = copy.deepcopy(value)
                yield changed
        if isinstance(get(document, path), dict):
            changed = copy.deepcopy(document)
            get(changed, path)["unknownField"] = 1
            yield changed


def test_the_generated_check_is_up_to_date() -> None:
    def code(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("VERSION = ")]

    assert code(schema_codegen.GENERATED.read_text()) == code(schema_codegen.generate()), (
        "run: python -m reconciler.spec.schema_codegen"
    )


@pytest.mark.parametrize("document", example_documents(), ids=[p.name for p in EXAMPLES])
def test_the_examples_pass_both_checks(document: Any) -> None:
    assert passes_fast_check(document)
    assert jsonschema.Draft202012Validator(configuration_schema()).is_valid(document)


def test_the_fast_check_agrees_with_jsonschema_on_thousands_of_variants() -> None:
    validator = jsonschema.Draft202012Validator(configuration_schema())
    checked = refused = 0
    disagreements = []
    for document in example_documents():
        for variant in variants(document):
            fast = passes_fast_check(copy.deepcopy(variant))
            full = validator.is_valid(variant)
            checked += 1
            refused += not full
            if fast != full:
                disagreements.append((fast, full, json.dumps(variant)[:300]))
    assert not disagreements, disagreements[:5]
    assert checked > 2000 and refused > checked // 2  # the variants do probe the schema


def test_the_fast_check_leaves_the_document_unchanged() -> None:
    for document in example_documents():
        before = copy.deepcopy(document)
        passes_fast_check(document)
        assert document == before
