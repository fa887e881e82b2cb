"""Stage 3: build the frozen model from a schema-valid document, with semantic checks.

Every check here reports 'file:line: field.path: sentence'; all problems of a
document are collected before failing, like the schema stage."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.crypto.certificates import (
    Certificate,
    certificate_validity_problem,
    load_certificate,
)
from reconciler.errors import CryptoError
from reconciler.spec.model import (
    AccountKeyAuth,
    AzureAuth,
    AzureFileShareLocation,
    BackupConfiguration,
    ClientSecretAuth,
    CommandSource,
    DefaultCredentialAuth,
    Encryption,
    FilesSource,
    LocalLocation,
    Origin,
    PreviousKey,
    Retention,
    SasTokenAuth,
    Schedule,
    SecretRef,
    SmbLocation,
    Source,
    SqliteSource,
    StorageLocation,
    VerificationPolicy,
)
from reconciler.spec.schema import format_path
from reconciler.spec.yamlfile import Document, line_of

_SMB_PATH = re.compile(r"^(?://|\\\\)([^/\\]+)[/\\]([^/\\]+)((?:[/\\][^/\\]+)*)[/\\]?$")


@dataclass
class _Problems:
    document: Document
    messages: list[str] = field(default_factory=list)

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        line = line_of(self.document.data, path, self.document.line)
        self.messages.append(f"{self.document.file}:{line}: {format_path(path)}: {message}")

    def origin(self, path: tuple[str | int, ...]) -> Origin:
        return Origin(self.document.file, line_of(self.document.data, path, self.document.line))


def build_configuration(
    document: Document, check_validity: bool = True
) -> tuple[BackupConfiguration | None, list[str]]:
    """The model of one schema-valid document, or None with the problems found."""
    problems = _Problems(document)
    data = document.data
    spec = data["spec"]
    # Absolute from here on: the daemon and commands must not depend on the cwd.
    base = document.file.parent.resolve()
    storage = _location(spec["storage"], base, ("spec", "storage"), problems)
    migration = spec.get("migration")
    migration_from = (
        _location(migration["from"], base, ("spec", "migration", "from"), problems)
        if migration
        else None
    )
    if migration_from is not None and migration_from == storage:
        problems.add(("spec", "migration", "from"), "is the same location as spec.storage")
    encryption = _encryption(spec["encryption"], base, problems, check_validity)
    sources = _sources(spec["sources"], base, problems)
    if problems.messages or encryption is None or storage is None:
        return None, problems.messages
    schedule = spec.get("schedule", {})
    retention = spec.get("retention", {})
    verification = spec.get("verification")
    config = BackupConfiguration(
        name=data["metadata"]["name"],
        origin=problems.origin(("metadata", "name")),
        storage=storage,
        migration_from=migration_from,
        encryption=encryption,
        schedule=Schedule(
            enabled=schedule.get("enabled", True),
            frequency_hours=schedule.get("frequencyHours", 12),
            retry_after_minutes=schedule.get("retryAfterMinutes", 30),
        ),
        retention=Retention(
            days=retention.get("days", 7), min_backups=retention.get("minBackups", 2)
        ),
        trigger=spec.get("trigger", ""),
        verification=VerificationPolicy(verification["frequencyDays"]) if verification else None,
        sources=sources,
        digest=hashlib.sha256(
            json.dumps(data, sort_keys=True, default=str).encode("utf-8")
        ).hexdigest(),
    )
    return config, []


def _path(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _secret(
    raw: dict[str, str], base: Path, path: tuple[str | int, ...], problems: _Problems
) -> SecretRef:
    where = format_path(path)
    origin = problems.origin(path)
    if "env" in raw:
        return SecretRef(env=raw["env"], field=where, origin=origin)
    return SecretRef(file=_path(base, raw["file"]), field=where, origin=origin)


def _location(
    raw: dict[str, Any], base: Path, path: tuple[str | int, ...], problems: _Problems
) -> StorageLocation | None:
    if "local" in raw:
        return LocalLocation(_path(base, raw["local"]["path"]).resolve())
    if "smb" in raw:
        smb = raw["smb"]
        match = _SMB_PATH.match(smb["path"])
        if match is None:
            problems.add(
                (*path, "smb", "path"),
                "must look like //server/share/folder or \\\\server\\share\\folder",
            )
            return None
        server, share, rest = match.groups()
        folder = "/".join(p for p in re.split(r"[/\\]", rest) if p)
        return SmbLocation(
            server=server,
            share=share,
            folder=folder,
            port=smb.get("port", 445),
            username=smb["username"],
            password=_secret(smb["password"], base, (*path, "smb", "password"), problems),
            require_encryption=smb.get("requireEncryption", False),
        )
    azure = raw["azureFileShare"]
    auth = _azure_auth(azure["auth"], base, (*path, "azureFileShare", "auth"), problems)
    return AzureFileShareLocation(
        account_url=azure["accountUrl"].rstrip("/"),
        share=azure["share"],
        directory=azure.get("directory", "").strip("/"),
        auth=auth,
    )


def _azure_auth(
    raw: dict[str, Any], base: Path, path: tuple[str | int, ...], problems: _Problems
) -> AzureAuth:
    if "accountKey" in raw:
        return AccountKeyAuth(_secret(raw["accountKey"], base, (*path, "accountKey"), problems))
    if "sasToken" in raw:
        return SasTokenAuth(_secret(raw["sasToken"], base, (*path, "sasToken"), problems))
    if "clientSecret" in raw:
        cs = raw["clientSecret"]
        secret = _secret(cs["secret"], base, (*path, "clientSecret", "secret"), problems)
        return ClientSecretAuth(cs["tenantId"], cs["clientId"], secret)
    return DefaultCredentialAuth()


def _encryption(
    raw: dict[str, Any], base: Path, problems: _Problems, check_validity: bool
) -> Encryption | None:
    cert_path = _path(base, raw["certificate"]["file"])
    field_path: tuple[str | int, ...] = ("spec", "encryption", "certificate", "file")
    certificate: Certificate | None = None
    try:
        certificate = load_certificate(cert_path)
    except CryptoError as exc:
        problems.add(field_path, str(exc))
    if certificate is not None and check_validity:
        # Certificate validity is always judged by the real clock, never --now.
        invalid = certificate_validity_problem(certificate, datetime.now(UTC))
        if invalid:
            problems.add(field_path, invalid)
    previous = tuple(
        PreviousKey(
            key_file=_path(base, item["key"]["file"]),
            passphrase=_secret(
                item["passphrase"],
                base,
                ("spec", "encryption", "previousKeys", i, "passphrase"),
                problems,
            )
            if "passphrase" in item
            else None,
        )
        for i, item in enumerate(raw.get("previousKeys", []))
    )
    index_key = (
        _secret(raw["indexKey"], base, ("spec", "encryption", "indexKey"), problems)
        if "indexKey" in raw
        else None
    )
    if certificate is None:
        return None
    return Encryption(
        certificate_file=cert_path,
        certificate=certificate,
        rewrap_existing=raw.get("rewrapExisting", False),
        previous_keys=previous,
        index_key=index_key,
    )


def _sources(raw: list[dict[str, Any]], base: Path, problems: _Problems) -> tuple[Source, ...]:
    seen: dict[str, int] = {}
    sources: list[Source] = []
    for index, item in enumerate(raw):
        name = item["name"]
        if name in seen:
            problems.add(
                ("spec", "sources", index, "name"),
                f"the source name {name!r} is already used by spec.sources[{seen[name]}]",
            )
        seen.setdefault(name, index)
        sources.append(_source(item, base))
    return tuple(sources)


def _source(item: dict[str, Any], base: Path) -> Source:
    name = item["name"]
    if "files" in item:
        files = item["files"]
        return FilesSource(name, _path(base, files["path"]), tuple(files.get("exclude", [])))
    if "sqlite" in item:
        return SqliteSource(name, _path(base, item["sqlite"]["path"]))
    command = item["command"]
    restore = command.get("restore")
    return CommandSource(
        name=name,
        backup=tuple(command["backup"]),
        restore=tuple(restore) if restore else None,
        timeout_seconds=command.get("timeoutSeconds", 600),
        workdir=base.resolve(),
    )
