"""A literal where a secret reference belongs is refused without quoting any of it.

Not the whole secret, and not a part of it either: a prefix or suffix of a few
characters already helps a guesser, so no run of 3 characters of the literal may
appear in the message unless the file's other text or the message's own words
hold it too."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ConfigError
from reconciler.spec.schema import schema_errors, secret_field_names
from reconciler.spec.schema_report import SECRET_HINT
from reconciler.spec.yamlfile import parse_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LITERAL = "Zq8VwXk3Ty7Jm2Np5RbQ4HcLd9Gf"

SMB_REF = "password: {env: BACKUP_SMB_PASSWORD}"
AZURE_REF = "accountKey: {env: BACKUP_AZURE_ACCOUNT_KEY}"
CERTIFICATE = "certificate: {file: keys/demo-backup.cer}"
GUID = "00000000-0000-4000-8000-000000000000"

# Where each secret field is written: (example file, reference line, with a {value}).
PLACES = {
    "password": ("smb.yaml", SMB_REF, "password: {value}"),
    "accountKey": ("azure-file-share.yaml", AZURE_REF, "accountKey: {value}"),
    "sasToken": ("azure-file-share.yaml", AZURE_REF, "sasToken: {value}"),
    "secret": (
        "azure-file-share.yaml",
        AZURE_REF,
        "clientSecret: {{tenantId: " + GUID + ", clientId: " + GUID + ", secret: {value}}}",
    ),
    "indexKey": (
        "quickstart.yaml",
        CERTIFICATE,
        CERTIFICATE.replace("{", "{{").replace("}", "}}") + "\n    indexKey: {value}",
    ),
    "passphrase": (
        "quickstart.yaml",
        CERTIFICATE,
        CERTIFICATE.replace("{", "{{").replace("}", "}}")
        + "\n    previousKeys:\n      - {{key: {{file: old.pem}}, passphrase: {value}}}",
    ),
}

# Ways of writing the literal (or something holding it) in place of a reference.
FORMS = {
    "plain": LITERAL,
    "double quoted": f'"{LITERAL}"',
    "single quoted": f"'{LITERAL}'",
    "block scalar": f"|\n                {LITERAL}",
    "in a list": f"[{LITERAL}]",
    "as a mapping key": f"{{{LITERAL}: x}}",
    "under an unknown field": f"{{value: {LITERAL}}}",
    "as a variable name": f"{{env: {LITERAL}-x}}",
    "beside a reference": f"{{env: X, file: {LITERAL}}}",
    "as a number": "918273645546372819",
}


def runs_of_three(text: str) -> set[str]:
    return {text[i : i + 3] for i in range(len(text) - 2)}


def write_case(tmp_path: Path, field: str, form: str) -> tuple[Path, str]:
    name, reference, replacement = PLACES[field]
    text = (EXAMPLES / name).read_text()
    assert reference in text
    text = text.replace(reference, replacement.format(value=FORMS[form]))
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path, text


def test_every_secret_field_of_the_schema_is_tried() -> None:
    assert set(PLACES) == secret_field_names()


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("field", sorted(PLACES))
def test_the_refusal_names_the_field_and_quotes_no_part_of_the_literal(
    tmp_path: Path, field: str, form: str
) -> None:
    path, text = write_case(tmp_path, field, form)
    try:
        [document] = parse_file(path)
        errors = schema_errors(document)
    except ConfigError as exc:  # e.g. a block scalar inside a flow mapping
        errors = [str(exc)]
    assert errors, "a literal or malformed secret must be refused"
    assert any(f".{field}" in e or f": {field}:" in e for e in errors), errors
    context = text.replace(LITERAL, "") + str(path) + SECRET_HINT
    leaked = {run for run in runs_of_three(LITERAL) if run not in context}
    assert len(leaked) > 15, "the literal must be distinctive for the test to mean anything"
    for error in errors:
        assert not {run for run in leaked if run in error}, error


@pytest.mark.parametrize("field", sorted(PLACES))
def test_a_plain_literal_gets_the_hint_to_use_a_reference(tmp_path: Path, field: str) -> None:
    path, _text = write_case(tmp_path, field, "plain")
    [document] = parse_file(path)
    [error] = schema_errors(document)
    assert error.endswith(f".{field}: {SECRET_HINT}"), error
    assert error.startswith(f"{path}:"), error
