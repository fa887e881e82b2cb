"""What the repository stores, as frozen dataclasses with a stable JSON form.

Where each is stored is ``repository.layout``'s business."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from reconciler.crypto.envelope import WrappedKey
from reconciler.errors import IntegrityError
from reconciler.timeutil import format_time, parse_time

FORMAT_NAME = "backupctl-repository"
FORMAT_VERSION = 2
"""The format new repositories get: 2 deduplicates (chunks in packs)."""
READABLE_FORMATS = (1, 2)


class BackupStatus(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"
    CORRUPT = "Corrupt"


class SourceStatus(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class StoredObject:
    """One encrypted object of a backup: its name inside the backup folder, size, SHA-256."""

    name: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class SourceResult:
    name: str
    kind: str
    status: SourceStatus
    size_bytes: int
    content_bytes: int
    items: int
    error: str | None
    object: StoredObject | None
    """Format 1: the encrypted object. Format 2: the chunk list (under the index key)."""
    chunks: int | None = None
    """Format 2: how many chunks the source's stream is; None for a format 1 object."""
    added_bytes: int | None = None
    """Format 2: the stored bytes this backup added (``size_bytes`` counts every
    chunk it references, shared or not)."""

    @property
    def chunked(self) -> bool:
        return self.chunks is not None


@dataclass(frozen=True)
class BackupRecord:
    """A backup's manifest; the catalog holds the same without the wrapped key."""

    id: str
    configuration: str
    status: BackupStatus
    created_at: datetime
    started_at: datetime
    completed_at: datetime | None
    trigger: str
    key_thumbprint: str
    sources: tuple[SourceResult, ...]
    wrapped_key: WrappedKey | None = None
    verified_at: datetime | None = None
    verification_error: str | None = None

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self.sources)

    @property
    def duration_seconds(self) -> float | None:
        if self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    def summary(self) -> BackupRecord:
        return replace(self, wrapped_key=None)


VERIFIED_STATUSES = (BackupStatus.SUCCEEDED, BackupStatus.PARTIALLY_SUCCEEDED)
"""The statuses periodic verification checks."""


def status_of_sources(sources: tuple[SourceResult, ...]) -> BackupStatus:
    """The status a backup's source results give it: Succeeded when none failed,
    Failed when all did, else PartiallySucceeded."""
    failed = sum(1 for s in sources if s.status is SourceStatus.FAILED)
    if failed == 0:
        return BackupStatus.SUCCEEDED
    return BackupStatus.FAILED if failed == len(sources) else BackupStatus.PARTIALLY_SUCCEEDED


def newest_succeeded(backups: Iterable[BackupRecord]) -> BackupRecord | None:
    """The newest Succeeded backup by creation time (ties: the greater id), or
    None when none succeeded: what ``latest`` names and what counts as the last
    success. Corrupt, failed and partial backups never qualify."""
    succeeded = [b for b in backups if b.status is BackupStatus.SUCCEEDED]
    return max(succeeded, key=lambda b: (b.created_at, b.id), default=None)


@dataclass(frozen=True)
class KeyHistoryEntry:
    thumbprint: str
    public_key_sha256: str
    subject: str
    not_after: datetime
    activated_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True)
class CredentialFingerprint:
    """A salted scrypt hash of the storage credentials, never the credentials."""

    algorithm: str
    salt: str
    hash: str
    principal: str


@dataclass(frozen=True)
class AppliedSettings:
    schedule_enabled: bool
    frequency_hours: int
    retry_after_minutes: int
    retention_days: int
    min_backups: int
    verification_days: int | None
    active_key: str
    key_history: tuple[KeyHistoryEntry, ...]
    credentials: CredentialFingerprint | None
    last_trigger: str


# ---------------------------------------------------------------- JSON forms


def _time_or_none(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _parse_time_or_none(value: Any) -> datetime | None:
    return None if value is None else parse_time(str(value))


def record_to_json(record: BackupRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": record.id,
        "configuration": record.configuration,
        "status": str(record.status),
        "createdAt": format_time(record.created_at),
        "startedAt": format_time(record.started_at),
        "completedAt": _time_or_none(record.completed_at),
        "trigger": record.trigger,
        "keyThumbprint": record.key_thumbprint,
        "sources": [
            {
                "name": s.name,
                "kind": s.kind,
                "status": str(s.status),
                "sizeBytes": s.size_bytes,
                "contentBytes": s.content_bytes,
                "items": s.items,
                "error": s.error,
                "object": None
                if s.object is None
                else {
                    "name": s.object.name,
                    "sizeBytes": s.object.size_bytes,
                    "sha256": s.object.sha256,
                },
                **({} if s.chunks is None else {"chunks": s.chunks, "addedBytes": s.added_bytes}),
            }
            for s in record.sources
        ],
        "verifiedAt": _time_or_none(record.verified_at),
        "verificationError": record.verification_error,
    }
    if record.wrapped_key is not None:
        data["wrappedKey"] = record.wrapped_key.to_json()
    return data


_BACKUP_STATUSES = {status.value: status for status in BackupStatus}
_SOURCE_STATUSES = {status.value: status for status in SourceStatus}


def _backup_status(value: Any) -> BackupStatus:
    """``BackupStatus(value)``, faster for the usual case (a catalog holds thousands)."""
    found = _BACKUP_STATUSES.get(value) if isinstance(value, str) else None
    return found if found is not None else BackupStatus(value)


def _source_status(value: Any) -> SourceStatus:
    found = _SOURCE_STATUSES.get(value) if isinstance(value, str) else None
    return found if found is not None else SourceStatus(value)


def record_from_json(data: Any, where: str) -> BackupRecord:
    """Raises IntegrityError naming ``where`` when ``data`` is not a valid record.

    Written for speed: a catalog holds a record per backup, and every plan
    reads it. The frozen dataclasses are filled in through their instance
    dictionaries, as their generated ``__init__`` would, without its
    ``object.__setattr__`` call per field (that halves the time; a test
    checks the result equals what the constructors make)."""
    try:
        completed = data.get("completedAt")
        verified = data.get("verifiedAt")
        wrapped = data.get("wrappedKey")
        record = _new(BackupRecord)
        fields = record.__dict__
        fields["id"] = str(data["id"])
        fields["configuration"] = str(data["configuration"])
        fields["status"] = _backup_status(data["status"])
        fields["created_at"] = parse_time(data["createdAt"])
        fields["started_at"] = parse_time(data["startedAt"])
        fields["completed_at"] = None if completed is None else parse_time(str(completed))
        fields["trigger"] = str(data.get("trigger", ""))
        fields["key_thumbprint"] = str(data["keyThumbprint"])
        fields["sources"] = tuple([_source_from_json(source) for source in data["sources"]])
        fields["wrapped_key"] = (
            None
            if wrapped is None and "wrappedKey" not in data
            else WrappedKey.from_json(wrapped, f"the wrapped data key in {where}")
        )
        fields["verified_at"] = None if verified is None else parse_time(str(verified))
        fields["verification_error"] = data.get("verificationError")
        return record
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{where} is damaged: {_field_problem(exc)}") from None


_new = object.__new__


def _source_from_json(data: Any) -> SourceResult:
    stored = data.get("object")
    result = _new(SourceResult)
    fields = result.__dict__
    fields["name"] = str(data["name"])
    fields["kind"] = str(data["kind"])
    fields["status"] = _source_status(data["status"])
    fields["size_bytes"] = int(data["sizeBytes"])
    fields["content_bytes"] = int(data.get("contentBytes", 0))
    fields["items"] = int(data.get("items", 0))
    fields["error"] = data.get("error")
    if stored is None:
        fields["object"] = None
    else:
        fields["object"] = stored_object = _new(StoredObject)
        object_fields = stored_object.__dict__
        object_fields["name"] = str(stored["name"])
        object_fields["size_bytes"] = int(stored["sizeBytes"])
        object_fields["sha256"] = str(stored["sha256"])
    chunks = data.get("chunks")
    fields["chunks"] = None if chunks is None else int(chunks)
    added = data.get("addedBytes")
    fields["added_bytes"] = None if added is None else int(added)
    return result


def _field_problem(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"the field {exc.args[0]!r} is missing"
    return "a field has an invalid value"


def settings_to_json(settings: AppliedSettings) -> dict[str, Any]:
    return {
        "schedule": {
            "enabled": settings.schedule_enabled,
            "frequencyHours": settings.frequency_hours,
            "retryAfterMinutes": settings.retry_after_minutes,
        },
        "retention": {"days": settings.retention_days, "minBackups": settings.min_backups},
        "verification": {"frequencyDays": settings.verification_days},
        "activeKey": settings.active_key,
        "keyHistory": [
            {
                "thumbprint": k.thumbprint,
                "publicKeySha256": k.public_key_sha256,
                "subject": k.subject,
                "notAfter": format_time(k.not_after),
                "activatedAt": format_time(k.activated_at),
                "retiredAt": _time_or_none(k.retired_at),
            }
            for k in settings.key_history
        ],
        "credentials": None
        if settings.credentials is None
        else {
            "algorithm": settings.credentials.algorithm,
            "salt": settings.credentials.salt,
            "hash": settings.credentials.hash,
            "principal": settings.credentials.principal,
        },
        "lastTrigger": settings.last_trigger,
    }


def settings_from_json(data: Any, where: str) -> AppliedSettings:
    try:
        credentials = data.get("credentials")
        return AppliedSettings(
            schedule_enabled=bool(data["schedule"]["enabled"]),
            frequency_hours=int(data["schedule"]["frequencyHours"]),
            retry_after_minutes=int(data["schedule"]["retryAfterMinutes"]),
            retention_days=int(data["retention"]["days"]),
            min_backups=int(data["retention"]["minBackups"]),
            verification_days=data.get("verification", {}).get("frequencyDays"),
            active_key=str(data["activeKey"]),
            key_history=tuple(
                KeyHistoryEntry(
                    thumbprint=str(k["thumbprint"]),
                    public_key_sha256=str(k["publicKeySha256"]),
                    subject=str(k.get("subject", "")),
                    not_after=parse_time(k["notAfter"]),
                    activated_at=parse_time(k["activatedAt"]),
                    retired_at=_parse_time_or_none(k.get("retiredAt")),
                )
                for k in data["keyHistory"]
            ),
            credentials=None
            if credentials is None
            else CredentialFingerprint(
                algorithm=str(credentials["algorithm"]),
                salt=str(credentials["salt"]),
                hash=str(credentials["hash"]),
                principal=str(credentials.get("principal", "")),
            ),
            last_trigger=str(data.get("lastTrigger", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{where} is damaged: {_field_problem(exc)}") from None


def dumps(data: Any) -> bytes:
    """Deterministic JSON, so that unchanged state gives identical bytes."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def loads(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntegrityError(f"{where} is damaged: it is not valid JSON") from None
