"""Loading a configuration: YAML with lines, schema validation, the model, secrets."""

from __future__ import annotations

import shutil
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from reconciler.crypto.keys import certificate_bytes, create_key_pair, private_key_pem
from reconciler.errors import ConfigError
from reconciler.spec import load_configurations
from reconciler.spec.build import build_configuration
from reconciler.spec.model import (
    CommandSource,
    FilesSource,
    LocalLocation,
    Origin,
    Retention,
    Schedule,
    SecretRef,
    SmbLocation,
    SqliteSource,
)
from reconciler.spec.schema import schema_errors
from reconciler.spec.secrets import environment_without_secrets, resolve_secret
from reconciler.spec.yamlfile import Document, configuration_files, line_of, parse_file

DEMO_CERT = Path(__file__).resolve().parents[2] / "examples" / "keys" / "demo-backup.cer"

VALID = """\
apiVersion: backupctl/v1
kind: BackupConfiguration
metadata:
  name: region-west
spec:
  storage:
    local:
      path: ./backups
  encryption:
    certificate: {file: backup.cer}
  sources:
    - name: deployment-inputs
      files: {path: data}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def with_certificate(folder: Path, name: str = "backup.cer") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(DEMO_CERT, folder / name))


def only_document(path: Path) -> Document:
    documents = parse_file(path)
    assert len(documents) == 1
    return documents[0]


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_configurations(path)
    return str(caught.value)


def build_errors(path: Path) -> list[str]:
    document = only_document(path)
    assert schema_errors(document) == []
    config, errors = build_configuration(document)
    assert config is None
    return errors


def rsa_1024_certificate_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak backups")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


# ------------------------------------------------------------------ yamlfile


def test_nested_keys_and_list_items_remember_the_line_they_were_written_on(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "lines.yaml",
        """\
        top: 1
        outer:
          inner: 2
          items:
            - name: first
              value: 1
            - name: second
              value: 2
        """,
    )
    data = only_document(path).data
    assert data.key_lines == {"top": 1, "outer": 2}
    assert data["outer"].key_lines == {"inner": 3, "items": 4}
    assert data["outer"]["items"][0].line == 5
    assert data["outer"]["items"][1].line == 7
    assert data["outer"]["items"][1].key_lines == {"name": 7, "value": 8}
    assert line_of(data, ("outer", "items", 1, "value"), 0) == 8
    assert line_of(data, ("outer", "items", 1), 0) == 7
    assert line_of(data, ("outer", "missing"), 0) == 2


def test_a_duplicate_key_is_rejected_naming_the_file_and_the_line_of_the_repeat(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "dup.yaml", "spec:\n  retention:\n    days: 7\n    days: 14\n")
    with pytest.raises(ConfigError) as caught:
        parse_file(path)
    assert str(caught.value) == f"{path}:4: duplicate key 'days'"


def test_invalid_yaml_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError) as caught:
        parse_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: invalid YAML: ")
    assert "Traceback" not in message


def test_a_tab_indented_line_is_invalid_yaml_named_by_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "tabs.yaml", "a: 1\n\tb: 2\n")
    with pytest.raises(ConfigError, match=r"tabs\.yaml:2: invalid YAML"):
        parse_file(path)


def test_every_non_empty_document_of_a_multi_document_file_is_loaded(tmp_path: Path) -> None:
    path = write(tmp_path, "multi.yaml", "---\na: 1\n---\n---\n# nothing\n---\nb: 2\n")
    documents = parse_file(path)
    assert [d.data for d in documents] == [{"a": 1}, {"b": 2}]
    assert [d.line for d in documents] == [2, 7]
    assert all(d.file == path for d in documents)


def test_yaml_anchors_and_aliases_are_resolved(tmp_path: Path) -> None:
    path = write(tmp_path, "alias.yaml", "base: &b {x: 1}\ncopy: *b\n")
    assert only_document(path).data == {"base": {"x": 1}, "copy": {"x": 1}}


def test_yaml_merge_keys_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "merge.yaml", "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert only_document(path).data["other"] == {"x": 1, "y": 2}


def test_a_folder_loads_every_yaml_and_yml_file_sorted_by_name(tmp_path: Path) -> None:
    for name in ("b.yml", "a.yaml", "c.yaml"):
        write(tmp_path, name, "a: 1\n")
    write(tmp_path, "notes.txt", "a: 1\n")
    write(tmp_path, "README.md", "# readme\n")
    (tmp_path / "sub.yaml").mkdir()
    assert [p.name for p in configuration_files(tmp_path)] == ["a.yaml", "b.yml", "c.yaml"]


def test_a_single_file_is_loaded_whatever_its_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "config.conf", "a: 1\n")
    assert configuration_files(path) == [path]


def test_a_folder_without_yaml_files_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "a: 1\n")
    with pytest.raises(ConfigError) as caught:
        configuration_files(tmp_path)
    assert str(caught.value) == f"{tmp_path}: the folder holds no *.yaml or *.yml file"


def test_a_missing_path_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        configuration_files(missing)
    assert str(caught.value) == f"{missing}: the file does not exist"
    with pytest.raises(ConfigError, match="does not exist"):
        parse_file(missing)


def test_a_file_holding_only_comments_is_not_a_configuration(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.yaml", "# nothing here yet\n")
    assert load_error(path) == f"{path}: holds no BackupConfiguration document"


def test_a_file_that_is_not_utf8_is_reported_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"\xff\xfe name: r\xe9gion\n")
    with pytest.raises(ConfigError) as caught:
        parse_file(path)
    assert str(caught.value).startswith(f"{path}: cannot read the file")


# ------------------------------------------------------------------ schema


def test_a_valid_document_has_no_schema_errors(tmp_path: Path) -> None:
    assert schema_errors(only_document(write(tmp_path, "ok.yaml", VALID))) == []


def test_a_value_below_the_minimum_is_reported_as_file_line_field_sentence(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "c.yaml", VALID + "  retention:\n    days: -1\n")
    assert schema_errors(only_document(path)) == [
        f"{path}:15: spec.retention.days: -1 is less than the minimum of 1"
    ]


def test_every_schema_error_of_a_document_is_reported_one_per_line(tmp_path: Path) -> None:
    text = (
        VALID.replace("name: region-west", "name: Region_West")
        + "  retention:\n    days: 0\n  schedule:\n    frequencyHours: 500\n"
    )
    path = write(tmp_path, "three.yaml", text)
    errors = schema_errors(only_document(path))
    assert len(errors) == 3
    assert any(e.startswith(f"{path}:4: metadata.name: ") for e in errors)
    assert f"{path}:15: spec.retention.days: 0 is less than the minimum of 1" in errors
    assert f"{path}:17: spec.schedule.frequencyHours: 500 is more than the maximum of 168" in errors
    message = load_error(path)
    assert message.splitlines() == errors


def test_every_invalid_document_in_a_folder_is_reported_together(tmp_path: Path) -> None:
    with_certificate(tmp_path)
    first = write(tmp_path, "a.yaml", VALID + "  retention:\n    days: 0\n")
    second = write(tmp_path, "b.yaml", VALID.replace("region-west", "b") + "  bogus: 1\n")
    lines = load_error(tmp_path).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{first}:15: spec.retention.days")
    assert lines[1] == f"{second}:14: spec: unknown field 'bogus'"


def test_an_unknown_field_is_named_with_its_line(tmp_path: Path) -> None:
    text = VALID.replace("      path: ./backups\n", "      path: ./backups\n      pth: x\n")
    path = write(tmp_path, "c.yaml", text)
    assert schema_errors(only_document(path)) == [
        f"{path}:9: spec.storage.local: unknown field 'pth'"
    ]


def test_a_number_written_as_a_string_is_a_type_error(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", VALID + '  schedule:\n    frequencyHours: "12"\n')
    assert schema_errors(only_document(path)) == [
        f'{path}:15: spec.schedule.frequencyHours: must be an integer, not the string "12"'
    ]


def test_a_missing_required_field_is_named(tmp_path: Path) -> None:
    text = VALID.replace("  encryption:\n    certificate: {file: backup.cer}\n", "")
    path = write(tmp_path, "c.yaml", text)
    assert schema_errors(only_document(path)) == [
        f"{path}:5: spec: missing required field 'encryption'"
    ]


def test_storage_with_two_kinds_asks_for_exactly_one(tmp_path: Path) -> None:
    text = VALID.replace(
        "      path: ./backups\n",
        "      path: ./backups\n    azureFileShare:\n      accountUrl: https://a.file.core.windows.net\n"
        "      share: backups\n      auth: {defaultCredential: {}}\n",
    )
    path = write(tmp_path, "c.yaml", text)
    errors = schema_errors(only_document(path))
    assert errors == [f"{path}:6: spec.storage: must set exactly one of local, smb, azureFileShare"]


def test_a_source_with_two_kinds_asks_for_exactly_one(tmp_path: Path) -> None:
    text = VALID.replace("files: {path: data}", "files: {path: data}\n      sqlite: {path: a.db}")
    path = write(tmp_path, "c.yaml", text)
    errors = schema_errors(only_document(path))
    assert len(errors) == 1
    assert "spec.sources[0]: must set exactly one of files, sqlite, command" in errors[0]


SMB_WITH_LITERAL_PASSWORD = VALID.replace(
    "    local:\n      path: ./backups\n",
    "    smb:\n      path: //srv/share\n      username: CONTOSO\\backupop\n"
    "      password: hunter2\n",
)
AZURE_WITH_LITERAL_KEY = VALID.replace(
    "    local:\n      path: ./backups\n",
    "    azureFileShare:\n      accountUrl: https://a.file.core.windows.net\n"
    '      share: backups\n      auth:\n        accountKey: "abc=="\n',
)
SAS_AS_A_NUMBER = VALID.replace(
    "    local:\n      path: ./backups\n",
    "    azureFileShare:\n      accountUrl: https://a.file.core.windows.net\n"
    "      share: backups\n      auth:\n        sasToken: 98765432\n",
)
PASSPHRASE_LITERAL = VALID.replace(
    "    certificate: {file: backup.cer}\n",
    "    certificate: {file: backup.cer}\n    previousKeys:\n"
    "      - key: {file: old.pem}\n        passphrase: s3same-open\n",
)
CLIENT_SECRET_LITERAL = VALID.replace(
    "    local:\n      path: ./backups\n",
    "    azureFileShare:\n      accountUrl: https://a.file.core.windows.net\n"
    "      share: backups\n      auth:\n        clientSecret:\n"
    "          tenantId: contoso.onmicrosoft.com\n"
    "          clientId: 0b7e1c2a-5d3f-4e8a-9c6b-1f2a3b4c5d6e\n"
    "          secret: Zx9~client-secret\n",
)
ENV_NAME_WITH_A_SECRET_IN_IT = VALID.replace(
    "    local:\n      path: ./backups\n",
    "    smb:\n      path: //srv/share\n      username: u\n      password: {env: 'hunter2 oops'}\n",
)


@pytest.mark.parametrize(
    ("text", "secret", "field"),
    [
        (SMB_WITH_LITERAL_PASSWORD, "hunter2", "spec.storage.smb.password"),
        (AZURE_WITH_LITERAL_KEY, "abc==", "spec.storage.azureFileShare.auth.accountKey"),
        (SAS_AS_A_NUMBER, "98765432", "spec.storage.azureFileShare.auth.sasToken"),
        (PASSPHRASE_LITERAL, "s3same-open", "spec.encryption.previousKeys[0].passphrase"),
        (
            CLIENT_SECRET_LITERAL,
            "Zx9~client-secret",
            "spec.storage.azureFileShare.auth.clientSecret.secret",
        ),
    ],
    ids=["smb-password", "account-key", "sas-number", "passphrase", "client-secret"],
)
def test_a_literal_secret_is_refused_without_repeating_it(
    tmp_path: Path, text: str, secret: str, field: str
) -> None:
    path = write(tmp_path, "c.yaml", text)
    errors = schema_errors(only_document(path))
    assert len(errors) == 1
    assert f": {field}: " in errors[0]
    assert "literal secret is not allowed" in errors[0]
    assert "{env: NAME}" in errors[0]
    assert secret not in errors[0]
    assert secret not in load_error(path)


def test_a_malformed_secret_reference_does_not_echo_what_was_written(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", ENV_NAME_WITH_A_SECRET_IN_IT)
    errors = schema_errors(only_document(path))
    assert len(errors) == 1
    assert "spec.storage.smb.password.env" in errors[0]
    assert "hunter2" not in errors[0]


@pytest.mark.parametrize("name", ["Region-West", "region_west", "-region", "region-", "a" * 64])
def test_metadata_name_must_be_lowercase_letters_digits_and_hyphens(
    tmp_path: Path, name: str
) -> None:
    path = write(tmp_path, "c.yaml", VALID.replace("name: region-west", f"name: {name}"))
    errors = schema_errors(only_document(path))
    assert len(errors) == 1
    assert errors[0].startswith(f'{path}:4: metadata.name: "{name[:20]}')
    assert "is not valid" in errors[0]


@pytest.mark.parametrize("name", ["a", "region-west", "r2", "a" * 63])
def test_metadata_names_of_the_allowed_form_are_accepted(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, "c.yaml", VALID.replace("name: region-west", f"name: {name}"))
    assert schema_errors(only_document(path)) == []


def test_a_document_that_is_not_a_mapping_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "- just\n- a list\n")
    errors = schema_errors(only_document(path))
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:1: (document): must be a mapping, not a list")


def test_the_wrong_kind_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", VALID.replace("kind: BackupConfiguration", "kind: Backup"))
    assert schema_errors(only_document(path)) == [
        f"{path}:2: kind: must be 'BackupConfiguration', not \"Backup\""
    ]


# ------------------------------------------------------------------ build (semantic checks)


def test_a_valid_file_builds_a_configuration_with_the_documented_defaults(
    tmp_path: Path,
) -> None:
    with_certificate(tmp_path)
    path = write(tmp_path, "c.yaml", VALID)
    [config] = load_configurations(path)
    assert config.name == "region-west"
    assert config.origin == Origin(path, 4)
    assert config.schedule == Schedule(enabled=True, frequency_hours=12, retry_after_minutes=30)
    assert config.retention == Retention(days=7, min_backups=2)
    assert config.trigger == ""
    assert config.verification is None
    assert config.migration_from is None
    assert config.encryption.rewrap_existing is False
    assert config.encryption.previous_keys == ()
    assert config.encryption.certificate.key_description == "RSA 3072"


def test_duplicate_source_names_name_both_indexes(tmp_path: Path) -> None:
    with_certificate(tmp_path)
    text = VALID + "    - name: deployment-inputs\n      sqlite: {path: arm.db}\n"
    path = write(tmp_path, "c.yaml", text)
    assert build_errors(path) == [
        f"{path}:14: spec.sources[1].name: the source name 'deployment-inputs' is already"
        " used by spec.sources[0]"
    ]


def test_a_missing_certificate_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", VALID)
    assert build_errors(path) == [
        f"{path}:10: spec.encryption.certificate.file: certificate file"
        f" {tmp_path / 'backup.cer'} does not exist"
    ]


def test_a_certificate_file_that_also_holds_the_private_key_is_refused(tmp_path: Path) -> None:
    cert, key = create_key_pair("ec-p256", "CN=backups", 365, datetime.now(UTC))
    (tmp_path / "backup.cer").write_bytes(
        certificate_bytes(cert, der=False) + private_key_pem(key, None)
    )
    path = write(tmp_path, "c.yaml", VALID)
    [error] = build_errors(path)
    assert error.startswith(f"{path}:10: spec.encryption.certificate.file: ")
    assert "contains a private key" in error
    assert "PRIVATE KEY" not in error


def test_an_rsa_1024_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "backup.cer").write_bytes(rsa_1024_certificate_pem())
    path = write(tmp_path, "c.yaml", VALID)
    [error] = build_errors(path)
    assert error.startswith(f"{path}:10: spec.encryption.certificate.file: ")
    assert "RSA 1024" in error
    assert "RSA >= 2048" in error


def test_an_expired_certificate_is_refused_but_accepted_for_restores(tmp_path: Path) -> None:
    three_years_ago = datetime.now(UTC) - timedelta(days=3 * 365)
    cert, _key = create_key_pair("ec-p256", "CN=old backups", 30, three_years_ago)
    (tmp_path / "backup.cer").write_bytes(certificate_bytes(cert, der=True))
    path = write(tmp_path, "c.yaml", VALID)
    [error] = build_errors(path)
    assert error.startswith(f"{path}:10: spec.encryption.certificate.file: ")
    assert f"certificate {cert.thumbprint} (CN=old backups) expired on" in error
    [config] = load_configurations(path, check_validity=False)
    assert config.encryption.certificate.thumbprint == cert.thumbprint


def _smb(tmp_path: Path, unc: str) -> SmbLocation:
    with_certificate(tmp_path)
    text = VALID.replace(
        "    local:\n      path: ./backups\n",
        f"    smb:\n      path: '{unc}'\n      username: 'CONTOSO\\backupop'\n"
        "      password: {env: BACKUP_SMB_PASSWORD}\n      port: 1445\n",
    )
    [config] = load_configurations(write(tmp_path, "smb.yaml", text))
    assert isinstance(config.storage, SmbLocation)
    return config.storage


@pytest.mark.parametrize(
    ("unc", "server", "share", "folder"),
    [
        ("//srv/share/a/b", "srv", "share", "a/b"),
        (r"\\srv\share\a", "srv", "share", "a"),
        ("//fileserver.contoso.com/AzSBackups", "fileserver.contoso.com", "AzSBackups", ""),
        ("//srv/share/", "srv", "share", ""),
        (r"\\srv\share\a\b\\"[:-1], "srv", "share", "a/b"),
    ],
)
def test_smb_paths_are_split_into_server_share_and_folder(
    tmp_path: Path, unc: str, server: str, share: str, folder: str
) -> None:
    location = _smb(tmp_path, unc)
    assert (location.server, location.share, location.folder) == (server, share, folder)
    assert location.username == "CONTOSO\\backupop"
    assert location.port == 1445
    assert location.password.env == "BACKUP_SMB_PASSWORD"
    assert location.password.field == "spec.storage.smb.password"


@pytest.mark.parametrize("unc", ["srv/share", "//srv", r"\\srv", "smb://srv/share"])
def test_an_smb_path_that_is_not_unc_is_refused(tmp_path: Path, unc: str) -> None:
    text = VALID.replace(
        "    local:\n      path: ./backups\n",
        f"    smb:\n      path: '{unc}'\n      username: u\n      password: {{env: PW}}\n",
    )
    path = write(tmp_path, "smb.yaml", text)
    errors = schema_errors(only_document(path))
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:8: spec.storage.smb.path: ")


def test_relative_paths_are_resolved_against_the_files_folder_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf" / "west"
    with_certificate(folder / "keys")
    text = (
        VALID.replace("path: ./backups", "path: ../backups")
        .replace("{file: backup.cer}", "{file: keys/backup.cer}")
        .replace("files: {path: data}", "files: {path: stamp/data}")
        + "    - name: arm\n      sqlite: {path: /var/lib/arm.db}\n"
        + "    - name: vault\n      command: {backup: [./bin/export]}\n"
    )
    path = write(folder, "region.yaml", text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    [config] = load_configurations(path)
    assert config.storage == LocalLocation((tmp_path / "conf" / "backups").resolve())
    assert config.encryption.certificate_file == folder / "keys" / "backup.cer"
    files, sqlite, command = config.sources
    assert isinstance(files, FilesSource)
    assert files.path == folder / "stamp" / "data"
    assert isinstance(sqlite, SqliteSource)
    assert sqlite.path == Path("/var/lib/arm.db")
    assert isinstance(command, CommandSource)
    assert command.workdir == folder.resolve()


def test_the_same_metadata_name_in_two_files_is_refused_naming_both(tmp_path: Path) -> None:
    with_certificate(tmp_path)
    first = write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "b.yaml", "# the same region, copied\n" + VALID)
    assert load_error(tmp_path) == (
        f"{second}:5: metadata.name: the name 'region-west' is already used at {first}:4"
    )


def test_configurations_from_a_folder_are_ordered_by_name(tmp_path: Path) -> None:
    with_certificate(tmp_path)
    write(tmp_path, "a.yaml", VALID.replace("region-west", "zulu"))
    write(tmp_path, "b.yaml", VALID.replace("region-west", "alpha") + "---\n" + VALID)
    assert [c.name for c in load_configurations(tmp_path)] == ["alpha", "region-west", "zulu"]


# ------------------------------------------------------------------ secrets


def ref(
    tmp_path: Path, *, env: str | None = None, file: Path | None = None, field: str = "f"
) -> SecretRef:
    return SecretRef(env=env, file=file, field=field, origin=Origin(tmp_path / "c.yaml", 12))


def test_a_secret_from_a_set_environment_variable_resolves_to_its_value(tmp_path: Path) -> None:
    secret = resolve_secret(ref(tmp_path, env="SMB_PW"), {"SMB_PW": "hunter2"})
    assert secret.value == "hunter2"


def test_an_unset_environment_variable_names_the_variable_and_the_field(tmp_path: Path) -> None:
    secret_ref = ref(tmp_path, env="SMB_PW", field="spec.storage.smb.password")
    with pytest.raises(ConfigError) as caught:
        resolve_secret(secret_ref, {"OTHER": "hunter2"})
    assert str(caught.value) == (
        f"{tmp_path / 'c.yaml'}:12: spec.storage.smb.password:"
        " the environment variable SMB_PW is not set"
    )


def test_an_empty_environment_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the environment variable SMB_PW is empty"):
        resolve_secret(ref(tmp_path, env="SMB_PW"), {"SMB_PW": ""})


def test_a_secret_file_has_its_trailing_newline_stripped(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n", encoding="utf-8")
    assert resolve_secret(ref(tmp_path, file=tmp_path / "pw")).value == "s3cret"
    (tmp_path / "crlf").write_bytes(b"s3cret\r\n")
    assert resolve_secret(ref(tmp_path, file=tmp_path / "crlf")).value == "s3cret"


def test_spaces_in_a_secret_file_are_part_of_the_secret(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(" s3 cret \n", encoding="utf-8")
    assert resolve_secret(ref(tmp_path, file=tmp_path / "pw")).value == " s3 cret "


def test_a_missing_secret_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as caught:
        resolve_secret(ref(tmp_path, file=missing, field="spec.storage.smb.password"))
    assert str(caught.value) == (
        f"{tmp_path / 'c.yaml'}:12: spec.storage.smb.password:"
        f" the secret file {missing} does not exist"
    )


def test_an_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"the file .*pw is empty"):
        resolve_secret(ref(tmp_path, file=tmp_path / "pw"))


def test_a_secret_reference_from_a_loaded_file_points_back_to_its_line(tmp_path: Path) -> None:
    with_certificate(tmp_path)
    text = VALID.replace(
        "    local:\n      path: ./backups\n",
        "    smb:\n      path: //srv/share\n      username: backupop\n"
        "      password: {file: secrets/smb-password}\n",
    )
    path = write(tmp_path, "c.yaml", text)
    [config] = load_configurations(path)
    assert isinstance(config.storage, SmbLocation)
    password = config.storage.password
    assert password.file == tmp_path / "secrets" / "smb-password"
    with pytest.raises(ConfigError) as caught:
        resolve_secret(password)
    assert str(caught.value).startswith(f"{path}:10: spec.storage.smb.password: the secret file")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "smb-password").write_text("hunter2\n", encoding="utf-8")
    assert resolve_secret(password).value == "hunter2"


def test_the_repr_and_str_of_a_resolved_secret_do_not_show_its_value(tmp_path: Path) -> None:
    secret = resolve_secret(ref(tmp_path, env="SMB_PW"), {"SMB_PW": "hunter2-value"})
    assert "hunter2-value" not in repr(secret)
    assert "hunter2-value" not in str(secret)
    assert "hunter2-value" not in f"{secret!r} {secret}"
    assert str(secret) == "<secret from environment variable SMB_PW>"


def test_commands_run_without_the_variables_that_hold_secrets(tmp_path: Path) -> None:
    with_certificate(tmp_path)
    text = (
        VALID.replace(
            "    local:\n      path: ./backups\n",
            "    smb:\n      path: //srv/share\n      username: backupop\n"
            "      password: {env: BACKUP_SMB_PASSWORD}\n",
        ).replace(
            "    certificate: {file: backup.cer}\n",
            "    certificate: {file: backup.cer}\n    previousKeys:\n"
            "      - key: {file: old.pem}\n        passphrase: {env: OLD_KEY_PASSPHRASE}\n",
        )
        + "  migration:\n    from:\n      azureFileShare:\n"
        + (
            "        accountUrl: https://old.file.core.windows.net\n        share: backups\n"
            "        auth: {sasToken: {env: OLD_SAS}}\n"
        )
    )
    [config] = load_configurations(write(tmp_path, "c.yaml", text))
    environ = {
        "PATH": "/usr/bin",
        "BACKUP_SMB_PASSWORD": "hunter2",
        "OLD_KEY_PASSPHRASE": "pass",
        "OLD_SAS": "sv=2024&sig=abc",
    }
    assert environment_without_secrets(config, environ) == {"PATH": "/usr/bin"}
