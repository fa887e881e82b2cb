"""The index key as an operator meets it: `keys create --index-key`, then
`spec.encryption.indexKey` checked by `validate --resolve-secrets`."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from tests.e2e.conftest import Result, Runner, Workspace, assert_one_clear_error

CERTIFICATE_LINE = "    certificate: {file: keys/demo-backup.cer}\n"


def index_key_of(path: Path) -> bytes:
    """The key a file written by `keys create --index-key` holds: base64, one newline."""
    text = path.read_text(encoding="ascii")
    assert text.endswith("\n") and text.count("\n") == 1, text
    return base64.b64decode(text.strip(), validate=True)


def use_index_key(workspace: Workspace, reference: str) -> int:
    """Add `indexKey: <reference>` to the quickstart's spec.encryption; return its line."""
    text = workspace.config.read_text(encoding="utf-8")
    assert CERTIFICATE_LINE in text
    text = text.replace(CERTIFICATE_LINE, f"{CERTIFICATE_LINE}    indexKey: {reference}\n")
    workspace.config.write_text(text, encoding="utf-8")
    return next(i for i, t in enumerate(text.splitlines(), 1) if "indexKey:" in t)


def validate(run: Runner, workspace: Workspace, env: dict[str, str] | None = None) -> Result:
    return run("validate", "-f", workspace.config, "--resolve-secrets", env=env)


# ------------------------------------------------------------------ keys create


def test_keys_create_writes_an_index_key_beside_the_pair_that_validate_accepts(
    workspace: Workspace, run: Runner
) -> None:
    keys = workspace.examples / "keys"
    cert, key, index_key = keys / "region.cer", keys / "region.pem", keys / "region.key"
    result = run("keys", "create", "--cert", cert, "--key", key, "--index-key", index_key)
    assert result.code == 0, result.text
    assert cert.is_file() and key.is_file()
    assert len(index_key_of(index_key)) == 32
    assert stat.S_IMODE(index_key.stat().st_mode) == 0o600, "a secret only its owner reads"
    assert f"index key:   {index_key}" in result.out
    assert "spec.encryption.indexKey" in result.out, "says what to do with it"
    assert "decrypts nothing" in result.out
    assert index_key.read_text().strip() not in result.text, "the key is not printed"
    use_index_key(workspace, f"{{file: {index_key}}}")
    assert validate(run, workspace).code == 0, validate(run, workspace).text


def test_keys_create_with_only_an_index_key_writes_only_that_and_a_new_key_each_time(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.key", tmp_path / "second.key"
    assert run("keys", "create", "--index-key", first).code == 0
    assert run("keys", "create", "--index-key", second).code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["first.key", "second.key"]
    assert index_key_of(first) != index_key_of(second)


def test_keys_create_never_overwrites_an_index_key_and_then_writes_nothing(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    index_key = tmp_path / "index.key"
    assert run("keys", "create", "--index-key", index_key).code == 0
    before = index_key.read_bytes()
    cert, key = tmp_path / "new.cer", tmp_path / "new.pem"
    again = run("keys", "create", "--cert", cert, "--key", key, "--index-key", index_key)
    assert_one_clear_error(again, str(index_key), "already exists")
    assert index_key.read_bytes() == before
    assert not cert.exists() and not key.exists(), "a refusal leaves no half-made pair"


def test_keys_create_leaves_no_index_key_when_the_pair_cannot_be_written(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    index_key = tmp_path / "index.key"
    result = run(
        "keys", "create", "--cert", tmp_path / "new.cer", "--key", tmp_path / "no" / "new.pem",
        "--index-key", index_key,
    )  # fmt: skip
    assert_one_clear_error(result, "new.pem")
    assert not index_key.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--cert", "x.cer"), "give --cert and --key together"),
        (("--key", "x.pem", "--index-key", "x.key"), "give --cert and --key together"),
        ((), "--index-key FILE"),
        (("--index-key", "x.key", "--algorithm", "ec-p256"), "--algorithm is about the key pair"),
        (("--index-key", "x.key", "--der"), "--der is about the key pair"),
        (("--cert", "a", "--key", "b", "--index-key", "a"), "must name different files"),
    ],
    ids=["cert alone", "key without cert", "nothing", "algorithm", "der", "same file"],
)
def test_keys_create_refuses_options_that_do_not_fit_together(
    workspace: Workspace, run: Runner, args: tuple[str, ...], fragment: str
) -> None:
    assert_one_clear_error(run("keys", "create", *args), fragment)
    assert not {"x.cer", "x.pem", "x.key", "a", "b"} & {p.name for p in workspace.root.iterdir()}


# ------------------------------------------------------------------ validate


def test_an_index_key_from_a_variable_is_checked_only_when_secrets_are_resolved(
    workspace: Workspace, run: Runner
) -> None:
    line = use_index_key(workspace, "{env: BACKUPCTL_INDEX_KEY}")
    good = base64.b64encode(bytes(range(32))).decode()
    assert run("validate", "-f", workspace.config).code == 0, "validate needs no secrets"
    assert validate(run, workspace, {"BACKUPCTL_INDEX_KEY": good}).code == 0
    unset = validate(run, workspace)
    assert_one_clear_error(
        unset,
        f"quickstart.yaml:{line}: spec.encryption.indexKey: the environment variable"
        " BACKUPCTL_INDEX_KEY is not set",
    )


BAD = {
    "not base64": "not-a-key-at-all",
    "too short": base64.b64encode(b"sixteen byte key").decode(),
    "too long": base64.b64encode(bytes(range(48))).decode(),
}


@pytest.mark.parametrize("value", BAD.values(), ids=list(BAD))
def test_a_bad_index_key_file_is_one_sentence_naming_file_and_field_not_the_value(
    workspace: Workspace, run: Runner, value: str
) -> None:
    secret = workspace.root / "index.key"
    secret.write_text(value + "\n")
    line = use_index_key(workspace, f"{{file: {secret}}}")
    result = validate(run, workspace)
    assert_one_clear_error(
        result,
        f"quickstart.yaml:{line}: spec.encryption.indexKey: the file {secret} does not hold"
        " an index key",
        "backupctl keys create --index-key",
    )
    assert len(result.err.splitlines()) == 1, result.err
    assert value not in result.text


def test_an_unreadable_index_key_file_names_it(workspace: Workspace, run: Runner) -> None:
    folder = workspace.root / "a-folder.key"
    folder.mkdir()
    line = use_index_key(workspace, f"{{file: {folder}}}")
    assert_one_clear_error(
        validate(run, workspace),
        f"quickstart.yaml:{line}: spec.encryption.indexKey: cannot read the secret file {folder}",
    )


def test_a_literal_index_key_is_refused_without_repeating_it(
    workspace: Workspace, run: Runner
) -> None:
    literal = base64.b64encode(bytes(range(100, 132))).decode()
    use_index_key(workspace, literal)
    result = run("validate", "-f", workspace.config)
    assert_one_clear_error(result, "spec.encryption.indexKey", "{env: NAME}")
    assert literal not in result.text and literal[:8] not in result.text


def test_verify_with_the_private_key_needs_no_configured_index_key(
    workspace: Workspace, run: Runner, tmp_path: Path
) -> None:
    index_key = tmp_path / "index.key"
    assert run("keys", "create", "--index-key", index_key).code == 0
    use_index_key(workspace, "{env: BACKUPCTL_INDEX_KEY}")
    made = run("apply", "-f", workspace.config, env={"BACKUPCTL_INDEX_KEY": index_key.read_text()})
    assert made.code == 0, made.text
    # A restore host holds the private key, not the index key's secret.
    verified = run(
        "verify", "-f", workspace.config, "--backup", "all", "--key", workspace.private_key
    )
    assert verified.code == 0, verified.text
    assert "1 intact, 0 failed" in verified.out, verified.text
