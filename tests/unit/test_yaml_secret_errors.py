"""A YAML syntax error in a secret field names the file, line and field, never its text.

The file did not parse, so the field is found from the raw text; these tests
write a secret-looking value in every way we know to make PyYAML fail on it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import ConfigError
from reconciler.spec import schema as schema_module
from reconciler.spec.schema import configuration_schema, secret_field_names
from reconciler.spec.yamlfile import parse_file

# Two halves, so that a value written as A<bad>B is checked for both.
A = "Qx7Zv9Kw"
B = "Rn4Tp8Ly"
SECRET = A + B

# Values after `field: ` that PyYAML refuses, each quoting (or once quoting) secret text.
BAD_VALUES = {
    "undefined alias": f"*{SECRET}",
    "unknown tag": f"!{SECRET} x",
    "undefined tag handle": f"!{A}!{B} x",
    "verbatim tag": f"!<{SECRET}> x",
    "python tag": f"!!python/name:{SECRET} x",
    "bad escape": f'"{A}\\q{B}"',
    "bad hex escape": f'"{A}\\u{B}"',
    "double quote to end of file": f'"{SECRET}',
    "single quote to end of file": f"'{SECRET}",
    "tab before the value": f"\t{SECRET}\t*",
    "bad block scalar indicator": f"|{SECRET}",
    "bad folded scalar indicator": f">-9{SECRET}",
    "bad anchor": f"&{A}${B} x",
    "reserved @": f"@{SECRET}",
    "reserved backtick": f"`{SECRET}",
    "reserved %": f"%{SECRET}",
    "colon in a plain value": f"{A}: {B}",
    "unclosed flow mapping": f"{{env: {SECRET}",
    "unclosed flow sequence": f"[{SECRET}",
    "!!int": f"!!int {SECRET}",
    "!!float": f"!!float {SECRET}",
    "!!bool": f"!!bool {SECRET}",
    "!!timestamp": f"!!timestamp {SECRET}",
    "!!binary": f"!!binary {SECRET}x",
    "!!set": f"!!set {SECRET}",
    "!!str of a mapping": f"!!str {{a: {SECRET}}}",
    "merge of a scalar": f"{{<<: {SECRET}}}",
    "non-string key": f"{{[{SECRET}]: x}}",
}

SMB_BLOCK = """\
spec:
  storage:
    smb:
      username: op
      password: {value}
      requireEncryption: false
  schedule: {{frequencyHours: 12}}
"""


def expected_message(path: Path, line: int, field: str) -> str:
    return (
        f"{path}:{line}: {field}: invalid YAML in a secret field (its text is not shown);"
        " write it as {env: NAME} or {file: PATH}"
    )


def assert_hidden(message: str) -> None:
    for part in (A, B):
        for start in range(len(part) - 2):
            assert part[start : start + 3] not in message, message


def parse_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_file(path)
    return str(caught.value)


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=list(BAD_VALUES))
def test_an_error_in_a_block_secret_value_names_the_field_not_its_text(
    tmp_path: Path, value: str
) -> None:
    path = tmp_path / "smb.yaml"
    path.write_text(SMB_BLOCK.format(value=value), encoding="utf-8")
    message = parse_error(path)
    assert message == expected_message(path, 5, "password")
    assert_hidden(message)


FLOW_AND_LIST_VALUES = ["undefined alias", "unknown tag", "bad escape", "!!int", "bad anchor"]


@pytest.mark.parametrize("kind", FLOW_AND_LIST_VALUES)
def test_an_error_in_a_flow_mapping_secret_names_the_field(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "flow.yaml"
    text = f"spec:\n  storage:\n    smb: {{username: op, password: {BAD_VALUES[kind]}}}\n"
    path.write_text(text, encoding="utf-8")
    message = parse_error(path)
    assert message == expected_message(path, 3, "password")
    assert_hidden(message)


@pytest.mark.parametrize("kind", FLOW_AND_LIST_VALUES)
def test_an_error_in_a_list_item_secret_names_the_field(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "keys.yaml"
    text = (
        "spec:\n  encryption:\n    previousKeys:\n      - file: old.pem\n"
        f"      - passphrase: {BAD_VALUES[kind]}\n        file: older.pem\n"
    )
    path.write_text(text, encoding="utf-8")
    message = parse_error(path)
    assert message == expected_message(path, 5, "passphrase")
    assert_hidden(message)


MULTI_LINE = {
    "alias on the next line": f"password:\n        *{SECRET}\n",
    "bad escape on a continued line": f'password: "{A}\n        x\\q{B}"\n',
    "anchor repeated on a later line": f"password: &{SECRET} x\n      other: &{SECRET} y\n",
    "alias in a nested mapping": f"password:\n        env: *{SECRET}\n",
    "quoted key": f'"password": *{SECRET}\n',
}


@pytest.mark.parametrize("text", MULTI_LINE.values(), ids=list(MULTI_LINE))
def test_an_error_within_a_multi_line_secret_value_names_the_field(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "multi.yaml"
    path.write_text(f"spec:\n  storage:\n    smb:\n      {text}", encoding="utf-8")
    message = parse_error(path)
    assert message == expected_message(path, 4, "password")
    assert_hidden(message)


def test_every_secret_field_of_the_schema_is_covered(tmp_path: Path) -> None:
    assert {"password", "accountKey", "sasToken", "secret", "passphrase"} <= secret_field_names()
    for field in sorted(secret_field_names()):
        path = tmp_path / f"{field}.yaml"
        path.write_text(f"spec:\n  auth:\n    {field}: *{SECRET}\n", encoding="utf-8")
        message = parse_error(path)
        assert message == expected_message(path, 3, field)


def _properties(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        yield from node.get("properties", {}).items()
        for value in node.values():
            yield from _properties(value)
    elif isinstance(node, list):
        for item in node:
            yield from _properties(item)


def test_the_secret_fields_are_exactly_the_schema_fields_holding_a_secret_reference() -> None:
    schema = configuration_schema()
    expected = {
        name
        for name, sub in _properties(schema)
        if isinstance(sub, dict) and sub.get("$ref") == "#/$defs/secretRef"
    }
    assert expected and secret_field_names() == frozenset(expected)


@pytest.fixture
def schema_with_vault_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The shipped schema plus a new secret field, spec.storage.local.vaultToken."""
    schema = copy.deepcopy(configuration_schema())
    local = schema["$defs"]["localStorage"]
    local.setdefault("properties", {})["vaultToken"] = {"$ref": "#/$defs/secretRef"}
    monkeypatch.setattr(schema_module, "configuration_schema", lambda: schema)
    secret_field_names.cache_clear()
    yield
    secret_field_names.cache_clear()


@pytest.mark.usefixtures("schema_with_vault_token")
def test_a_secret_field_added_to_the_schema_is_hidden_too(tmp_path: Path) -> None:
    assert "vaultToken" in json.dumps(schema_module.configuration_schema())
    path = tmp_path / "local.yaml"
    path.write_text(
        f"spec:\n  storage:\n    local:\n      vaultToken: !{SECRET} x\n", encoding="utf-8"
    )
    message = parse_error(path)
    assert message == expected_message(path, 4, "vaultToken")
    assert_hidden(message)


def test_an_error_outside_secret_fields_still_shows_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(
        "spec:\n  storage:\n    smb:\n      password: {env: X}\n      username: *nobody\n",
        encoding="utf-8",
    )
    assert parse_error(path) == f"{path}:5: invalid YAML: found undefined alias 'nobody'"


def test_a_bad_typed_value_outside_secret_fields_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "typed.yaml"
    path.write_text("spec:\n  retention:\n    days: !!int seven\n", encoding="utf-8")
    assert parse_error(path) == f"{path}:3: invalid YAML: the value cannot be read as !!int"


@pytest.mark.parametrize("quote", ["'", '"'])
def test_a_quote_left_open_in_a_secret_is_blamed_where_it_was_opened(
    tmp_path: Path, quote: str
) -> None:
    # The quote runs on until one in a later comment closes it, and PyYAML
    # fails there, far below the secret.
    path = tmp_path / "open.yaml"
    path.write_text(
        f"spec:\n  storage:\n    smb:\n      username: op\n      password: {quote}{SECRET}\n"
        "      requireEncryption: false\n  retention:\n    days: 7\n"
        f"  # a {quote}quoted{quote} note: the share's folder\n"
        "  schedule:\n    frequencyHours: 1\n",
        encoding="utf-8",
    )
    message = parse_error(path)
    assert message == expected_message(path, 5, "password")
