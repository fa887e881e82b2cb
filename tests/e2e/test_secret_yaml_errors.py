"""`backupctl validate` on a secret field PyYAML cannot parse: file, line and field, no text."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Runner, Workspace, assert_one_clear_error
from tests.unit.test_yaml_secret_errors import BAD_VALUES, A, B, assert_hidden

PASSWORD_LINE = "password: {env: BACKUP_SMB_PASSWORD}"


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=list(BAD_VALUES))
def test_validate_names_the_secret_field_and_hides_its_text(
    workspace: Workspace, run: Runner, value: str
) -> None:
    config = workspace.examples / "smb.yaml"
    text = config.read_text()
    line = next(i for i, t in enumerate(text.splitlines(), 1) if PASSWORD_LINE in t)
    config.write_text(text.replace(PASSWORD_LINE, f"password: {value}"))
    result = run("validate", "-f", config)
    assert_one_clear_error(result, f"smb.yaml:{line}: password: invalid YAML in a secret field")
    assert len(result.err.splitlines()) == 1, result.err
    assert_hidden(result.text)


def test_debug_traceback_of_a_secret_yaml_error_hides_the_text_too(
    workspace: Workspace, run: Runner
) -> None:
    config = workspace.examples / "smb.yaml"
    config.write_text(config.read_text().replace(PASSWORD_LINE, f"password: !!int {A}{B}"))
    result = run("--debug", "plan", "-f", config)
    assert result.code == 1, result.text
    assert "Traceback" in result.err, "--debug shows where the error was raised"
    assert "password: invalid YAML in a secret field" in result.err
    assert_hidden(result.text)


def test_a_secret_written_as_a_mapping_key_is_not_echoed(workspace: Workspace, run: Runner) -> None:
    # `{Sup3rS3cret}` is YAML for a mapping whose one key is the secret.
    config = workspace.examples / "smb.yaml"
    config.write_text(config.read_text().replace(PASSWORD_LINE, f"password: {{{A}{B}}}"))
    result = run("validate", "-f", config)
    assert_one_clear_error(result, "spec.storage.smb.password: unknown field", "{env: NAME}")
    assert_hidden(result.text)
