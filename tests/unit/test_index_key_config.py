"""spec.encryption.indexKey: where the index key is read from, and what a bad one says."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from reconciler.dedup.keys import IndexKey
from reconciler.errors import ConfigError, CryptoError
from reconciler.spec import load_configurations
from reconciler.spec.model import BackupConfiguration
from reconciler.spec.secrets import (
    environment_without_secrets,
    resolve_index_key,
    secret_problems,
)
from tests.unit.test_spec_loading import VALID, with_certificate, write

KEY = bytes(range(32))
KEY_TEXT = base64.b64encode(KEY).decode()
CERTIFICATE_LINE = "    certificate: {file: backup.cer}\n"


def configuration(folder: Path, index_key: str | None) -> BackupConfiguration:
    """The one configuration of region.yaml in ``folder``, with ``indexKey: <index_key>``."""
    with_certificate(folder)
    text = VALID
    if index_key is not None:
        text = text.replace(CERTIFICATE_LINE, f"{CERTIFICATE_LINE}    indexKey: {index_key}\n")
    [config] = load_configurations(write(folder, "region.yaml", text))
    return config


INDEX_KEY_LINE = 11  # the line of `indexKey:` in region.yaml


def test_without_index_key_the_repository_keeps_its_own(tmp_path: Path) -> None:
    assert configuration(tmp_path, None).encryption.index_key is None


def test_an_index_key_in_a_variable_resolves_to_its_32_bytes(tmp_path: Path) -> None:
    config = configuration(tmp_path, "{env: BACKUPCTL_INDEX_KEY}")
    ref = config.encryption.index_key
    assert ref is not None and ref.env == "BACKUPCTL_INDEX_KEY"
    resolved = resolve_index_key(ref, {"BACKUPCTL_INDEX_KEY": KEY_TEXT})
    assert resolved.secret == KEY
    assert IndexKey(resolved.secret) == IndexKey.from_base64(KEY_TEXT, where="test")


def test_a_relative_index_key_file_is_read_beside_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "index.key").write_text(KEY_TEXT + "\n")
    config = configuration(tmp_path, "{file: secrets/index.key}")
    monkeypatch.chdir("/")
    ref = config.encryption.index_key
    assert ref is not None
    assert resolve_index_key(ref, {}).secret == KEY


def test_neither_the_reference_nor_the_resolved_key_shows_the_key(tmp_path: Path) -> None:
    config = configuration(tmp_path, "{env: BACKUPCTL_INDEX_KEY}")
    assert config.encryption.index_key is not None
    resolved = resolve_index_key(config.encryption.index_key, {"BACKUPCTL_INDEX_KEY": KEY_TEXT})
    for text in (repr(config), repr(resolved), str(resolved), f"{resolved}"):
        assert KEY_TEXT not in text and repr(KEY) not in text and KEY.hex() not in text
    assert "BACKUPCTL_INDEX_KEY" in str(resolved), "says where it came from"


BAD_TEXT = {
    "not base64": "this is not base64 at all!!",
    "16 bytes": base64.b64encode(bytes(16)).decode(),
    "33 bytes": base64.b64encode(bytes(33)).decode(),
    "hex, not base64": KEY.hex(),
    "url-safe alphabet": base64.urlsafe_b64encode(b"\xfb" * 32).decode(),
    "padding missing": KEY_TEXT.rstrip("="),
}


@pytest.mark.parametrize("text", BAD_TEXT.values(), ids=list(BAD_TEXT))
def test_a_value_that_is_not_an_index_key_is_one_sentence_naming_file_and_field(
    tmp_path: Path, text: str
) -> None:
    (tmp_path / "index.key").write_text(text + "\n")
    config = configuration(tmp_path, "{file: index.key}")
    assert config.encryption.index_key is not None
    with pytest.raises(ConfigError) as caught:
        resolve_index_key(config.encryption.index_key, {})
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'region.yaml'}:{INDEX_KEY_LINE}: ")
    assert "spec.encryption.indexKey" in message and "index.key" in message
    assert "base64 text of 32 random bytes" in message
    assert "backupctl keys create --index-key" in message, "says how to make a good one"
    assert "\n" not in message and text not in message


def test_an_unset_variable_or_a_missing_file_names_the_field(tmp_path: Path) -> None:
    config = configuration(tmp_path, "{env: BACKUPCTL_INDEX_KEY}")
    assert config.encryption.index_key is not None
    with pytest.raises(ConfigError, match=r"spec\.encryption\.indexKey: .*BACKUPCTL_INDEX_KEY"):
        resolve_index_key(config.encryption.index_key, {})
    config = configuration(tmp_path, "{file: nowhere.key}")
    assert config.encryption.index_key is not None
    with pytest.raises(
        ConfigError, match=r"region\.yaml:11: spec\.encryption\.indexKey: .*does not exist"
    ):
        resolve_index_key(config.encryption.index_key, {})


def test_secret_problems_checks_the_form_of_the_index_key_and_every_other_secret(
    tmp_path: Path,
) -> None:
    config = configuration(tmp_path, "{env: BACKUPCTL_INDEX_KEY}")
    assert secret_problems(config, {"BACKUPCTL_INDEX_KEY": KEY_TEXT}) == []
    [problem] = secret_problems(config, {"BACKUPCTL_INDEX_KEY": "c2hvcnQ="})
    assert "spec.encryption.indexKey" in problem and "base64 text of 32" in problem


def test_a_dump_command_does_not_see_the_index_key_variable(tmp_path: Path) -> None:
    config = configuration(tmp_path, "{env: BACKUPCTL_INDEX_KEY}")
    env = environment_without_secrets(config, {"BACKUPCTL_INDEX_KEY": KEY_TEXT, "PATH": "/bin"})
    assert env == {"PATH": "/bin"}


AGREEMENT = {
    **BAD_TEXT,
    "good": KEY_TEXT,
    "good with spaces around": f"  {KEY_TEXT}\t",
    "good with a newline inside": KEY_TEXT[:20] + "\n" + KEY_TEXT[20:],
    "empty": "",
}


@pytest.mark.parametrize("text", AGREEMENT.values(), ids=list(AGREEMENT))
def test_spec_accepts_exactly_the_index_keys_the_deduplicating_format_accepts(
    tmp_path: Path, text: str
) -> None:
    """spec decodes the key itself (it may not import dedup); the two must agree."""
    try:
        expected: bytes | None = IndexKey.from_base64(text, where="test").secret
    except CryptoError:
        expected = None
    config = configuration(tmp_path, "{env: BACKUPCTL_INDEX_KEY}")
    assert config.encryption.index_key is not None
    try:
        got: bytes | None = resolve_index_key(
            config.encryption.index_key, {"BACKUPCTL_INDEX_KEY": text}
        ).secret
    except ConfigError:
        got = None
    assert got == expected
