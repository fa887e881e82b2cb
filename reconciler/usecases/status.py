"""The status page's content: each configuration's health, backups and alerts.

``build_status`` reads every configuration's repository once (its whole
catalog: health needs the newest Succeeded backup, the charts the history and
the page its slice) and never raises for a repository it cannot read: that is
shown as the configuration's health with an alert of the right kind. What the
daemon knows besides the repository (its last reconcile, the backup it is
making) comes in as ``Activity``, one per configuration.

Health (README, "Status"): CRITICAL when the last Succeeded backup is more
than twice the schedule's frequency old, or there is none though the
repository exists; WARNING when it is more than the frequency plus
retryAfterMinutes old, a backup is Corrupt or failed verification, the
certificate expires within 30 days, the last attempt or reconcile failed;
OK otherwise. The schedule's and the certificate's rules are
``reconcile.policy``'s; none is restated here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.errors import (
    AuthenticationError,
    BackupctlError,
    CryptoError,
    IntegrityError,
    ObjectNotFoundError,
    PermissionDeniedError,
    StorageFullError,
    UnreachableError,
)
from reconciler.reconcile.policy.certificate_health import certificate_warnings
from reconciler.reconcile.policy.schedule import backup_due, next_due_time
from reconciler.reconcile.prepared import prepare
from reconciler.repository.records import (
    BackupRecord,
    BackupStatus,
    SourceResult,
    newest_succeeded,
)
from reconciler.repository.store import Repository
from reconciler.spec.model import BackupConfiguration
from reconciler.timeutil import format_time
from reconciler.usecases.status_model import (
    DEFAULT_PAGE_SIZE,
    MAX_HISTORY_POINTS,
    Alert,
    AlertKind,
    BackupPage,
    BackupSummary,
    ConfigurationStatus,
    Health,
    HistoryPoint,
    LastReconcile,
    Progress,
    SourceSummary,
    StatusReport,
)

_FAILED_ATTEMPTS = (BackupStatus.FAILED, BackupStatus.PARTIALLY_SUCCEEDED)
_NAMED_CORRUPT = 3
"""Corrupt backups named in their alert; the rest are counted."""


@dataclass(frozen=True)
class Activity:
    """What the daemon knows of one configuration that its repository does not say."""

    last_reconcile: LastReconcile | None = None
    failure_kind: AlertKind | None = None
    """The kind of the last reconcile's failure. None when it did not fail, or
    when all that failed is a backup the catalog records with its failed
    sources (that backup's own alert says so)."""
    running: Progress | None = None


def alert_kind_of(error: BaseException) -> AlertKind:
    """The kind of alert an error raises (a full disk, an unreachable server...)."""
    if isinstance(error, StorageFullError):
        return AlertKind.CAPACITY
    if isinstance(error, UnreachableError):
        return AlertKind.CONNECTIVITY
    if isinstance(error, PermissionDeniedError | ObjectNotFoundError):
        return AlertKind.PATH_OR_PERMISSION
    if isinstance(error, AuthenticationError):
        return AlertKind.AUTHENTICATION
    if isinstance(error, IntegrityError):
        return AlertKind.FAILED_VERIFICATION
    return AlertKind.GENERAL


def build_status(
    configs: Sequence[BackupConfiguration],
    now: datetime,
    daemon_state: Mapping[str, Activity] | None = None,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
    only: str | None = None,
) -> StatusReport:
    """Every configuration's status at ``now`` (or only the one named ``only``),
    each with page ``page`` of its backups, newest first.

    ``daemon_state``: the daemon's activity by configuration name; None outside
    the daemon. Raises nothing for a repository that cannot be read."""
    statuses = tuple(
        configuration_status(
            config,
            now,
            None if daemon_state is None else daemon_state.get(config.name, Activity()),
            page,
            page_size,
        )
        for config in configs
        if only is None or config.name == only
    )
    return StatusReport(now, statuses)


def configuration_status(
    config: BackupConfiguration,
    now: datetime,
    activity: Activity | None = None,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> ConfigurationStatus:
    """One configuration's status at ``now`` with page ``page`` (1-based) of its
    backups, newest first. ``activity``: what the daemon knows, None outside it.

    Raises nothing for a repository that cannot be read: its health says so."""
    activity = activity or Activity()
    alerts = _certificate_alerts(config, now) + _reconcile_alerts(activity)
    try:
        seen = _read(config)
    except BackupctlError as exc:
        alerts.append(Alert(alert_kind_of(exc), Health.CRITICAL, f"cannot read: {exc}"))
        return _status(
            config, now, activity, alerts, None, page, page_size, unknown=None, next_at=None
        )
    unknown = None
    running = _running(config, activity, seen, now)
    if seen is None:
        reconciled = activity.last_reconcile is not None
        alerts.append(_no_repository(config, reconciled))
        unknown = None if reconciled else alerts[-1].message
    else:
        alerts.extend(_repository_alerts(config, seen, running is not None, now))
        if newest_succeeded(seen.backups) is None and running is not None:
            unknown = "the first backup is being made"
    next_at = _next_backup(config, seen, now)
    return _status(config, now, activity, alerts, seen, page, page_size, unknown, next_at, running)


def find_backup(config: BackupConfiguration, backup_id: str) -> BackupSummary | None:
    """The backup ``backup_id`` as the configuration's catalog lists it, None when
    it lists none such. Raises BackupctlError when the repository cannot be read."""
    seen = _read(config)
    if seen is None:
        return None
    for record in seen.backups:
        if record.id == backup_id:
            return _summary(record)
    return None


# ------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Seen:
    """What one read of a repository found."""

    format_version: int
    backups: tuple[BackupRecord, ...]
    """Oldest first, as the catalog lists them."""
    catalog_damaged: str | None
    last_trigger: str | None
    description: str
    repository: Repository


def _read(config: BackupConfiguration) -> _Seen | None:
    """The repository's catalog and settings; None when there is no repository.

    Raises BackupctlError (a storage, secret or integrity error)."""
    repository = prepare(config).repository
    if not repository.exists():
        return None
    catalog = repository.read_catalog()
    settings = repository.read_settings()
    return _Seen(
        repository.format_version,
        catalog.backups,
        catalog.damaged,
        None if settings is None else settings.last_trigger,
        repository.description,
        repository,
    )


# ------------------------------------------------------------- assembling


def _status(
    config: BackupConfiguration,
    now: datetime,
    activity: Activity,
    alerts: list[Alert],
    seen: _Seen | None,
    page: int,
    page_size: int,
    unknown: str | None,
    next_at: datetime | None,
    running: Progress | None = None,
) -> ConfigurationStatus:
    """The status with health from ``alerts`` (UNKNOWN for the reason ``unknown``
    when nothing is critical)."""
    backups = seen.backups if seen is not None else ()
    newest = newest_succeeded(backups)
    alerts.sort(key=lambda a: a.severity is not Health.CRITICAL)
    health, reason = _overall(config, alerts, newest, now)
    if unknown is not None and health is not Health.CRITICAL:
        health, reason = Health.UNKNOWN, unknown
    return ConfigurationStatus(
        name=config.name,
        location=config.storage.describe(),
        health=health,
        health_reason=reason,
        frequency_hours=config.schedule.frequency_hours if config.schedule.enabled else None,
        last_success=None if newest is None else _summary(newest),
        next_backup_at=None
        if seen is None and unknown is None
        else _next_backup(config, seen, now),
        last_reconcile=activity.last_reconcile,
        key_thumbprint=config.encryption.certificate.thumbprint,
        certificate_subject=config.encryption.certificate.subject,
        certificate_not_after=config.encryption.certificate.not_after,
        repository_format=None if seen is None else seen.format_version,
        alerts=tuple(alerts),
        backup_count=len(backups),
        stored_bytes=sum(_stored(b) for b in backups if b.status is not BackupStatus.RUNNING),
        running=running,
        history=_history(backups),
        backups=_page(backups, page, page_size),
    )


def _overall(
    config: BackupConfiguration, alerts: list[Alert], newest: BackupRecord | None, now: datetime
) -> tuple[Health, str]:
    """The worst alert's severity and message (criticals sort first); OK without one."""
    if alerts:
        worst = alerts[0]
        return worst.severity, worst.message
    if not config.schedule.enabled or newest is None:
        return Health.OK, "the schedule is off"
    return (
        Health.OK,
        f"the last Succeeded backup is {_age(now - newest.created_at)} old; the schedule"
        f" asks for one every {_hours(config.schedule.frequency_hours)}",
    )


def _no_repository(config: BackupConfiguration, reconciled: bool) -> Alert:
    """Critical once the daemon reconciled (and so should have created it)."""
    where = config.storage.describe()
    if reconciled:
        return Alert(
            AlertKind.PATH_OR_PERMISSION,
            Health.CRITICAL,
            f"no repository exists at {where} though the daemon reconciled it",
        )
    return Alert(
        AlertKind.PATH_OR_PERMISSION,
        Health.WARNING,
        f"no repository exists at {where}: apply creates it; if it was applied, the"
        " location is wrong or not mounted",
    )


def _certificate_alerts(config: BackupConfiguration, now: datetime) -> list[Alert]:
    try:
        warnings = certificate_warnings(config.encryption.certificate, now)
    except CryptoError as exc:
        return [Alert(AlertKind.CERTIFICATE_EXPIRY, Health.CRITICAL, str(exc))]
    return [Alert(AlertKind.CERTIFICATE_EXPIRY, Health.WARNING, w) for w in warnings]


def _reconcile_alerts(activity: Activity) -> list[Alert]:
    last = activity.last_reconcile
    if last is None or last.result != "failed" or activity.failure_kind is None:
        return []
    message = f"the last reconcile ({format_time(last.at)}) failed"
    if last.message:
        message += f": {last.message}"
    return [Alert(activity.failure_kind, Health.WARNING, message)]


def _repository_alerts(
    config: BackupConfiguration, seen: _Seen, running: bool, now: datetime
) -> list[Alert]:
    alerts = _age_alerts(config, seen, running, now)
    last = _last_attempt(seen.backups, now)
    if last is not None and last.status in _FAILED_ATTEMPTS:
        failures = "; ".join(f"{s.name}: {s.error}" for s in last.sources if s.error)
        message = f"the last backup ({last.id}) ended {last.status}"
        alerts.append(
            Alert(
                AlertKind.GENERAL, Health.WARNING, f"{message}: {failures}" if failures else message
            )
        )
    alerts.extend(_verification_alerts(seen.backups))
    if seen.catalog_damaged is not None:
        alerts.append(
            Alert(
                AlertKind.GENERAL,
                Health.WARNING,
                f"{seen.catalog_damaged} in {seen.description}: the backups were read from"
                " their manifests, and the next apply writes it again",
            )
        )
    return alerts


def _age_alerts(
    config: BackupConfiguration, seen: _Seen, running: bool, now: datetime
) -> list[Alert]:
    """The last Succeeded backup's age against the schedule's frequency."""
    schedule = config.schedule
    if not schedule.enabled:
        return []
    newest = newest_succeeded(seen.backups)
    if newest is None:
        if running and not _attempted(seen.backups):
            return []  # the first backup is being made
        return [
            Alert(
                AlertKind.GENERAL, Health.CRITICAL, f"{seen.description} holds no Succeeded backup"
            )
        ]
    frequency = timedelta(hours=schedule.frequency_hours)
    age = now - newest.created_at
    if age > 2 * frequency:
        severity = Health.CRITICAL
    elif age > frequency + timedelta(minutes=schedule.retry_after_minutes):
        severity = Health.WARNING
    else:
        return []
    return [
        Alert(
            AlertKind.GENERAL,
            severity,
            f"the last Succeeded backup ({newest.id}) is {_age(age)} old; the schedule asks"
            f" for one every {_hours(schedule.frequency_hours)}",
        )
    ]


def _attempted(backups: tuple[BackupRecord, ...]) -> bool:
    """Whether any backup attempt finished (one that is still Running does not count)."""
    return any(b.status is not BackupStatus.RUNNING for b in backups)


def _verification_alerts(backups: tuple[BackupRecord, ...]) -> list[Alert]:
    damaged = [
        b for b in backups if b.status is BackupStatus.CORRUPT or b.verification_error is not None
    ]
    if not damaged:
        return []
    newest = damaged[-1]
    if len(damaged) == 1:
        message = f"backup {newest.id} failed verification"
    else:
        named = ", ".join(b.id for b in reversed(damaged[-_NAMED_CORRUPT:]))
        more = len(damaged) - _NAMED_CORRUPT
        named += f" and {more} more" if more > 0 else ""
        message = f"{len(damaged)} backups failed verification ({named})"
    if newest.verification_error:
        message += f": {newest.verification_error}"
    return [Alert(AlertKind.FAILED_VERIFICATION, Health.WARNING, message)]


def _last_attempt(backups: tuple[BackupRecord, ...], now: datetime) -> BackupRecord | None:
    """The newest finished backup not dated after ``now`` (as the schedule counts)."""
    finished = [b for b in backups if b.status is not BackupStatus.RUNNING and b.created_at <= now]
    return max(finished, key=lambda b: (b.created_at, b.id), default=None)


def _next_backup(config: BackupConfiguration, seen: _Seen | None, now: datetime) -> datetime | None:
    """``now`` when a backup is due (the daemon's next tick makes it), else when the
    schedule next asks for one; None when it never will by itself."""
    backups = seen.backups if seen is not None else ()
    last_trigger = seen.last_trigger if seen is not None else None
    if backup_due(config.schedule, config.trigger, backups, last_trigger, now):
        return now
    return next_due_time(config.schedule, backups, now)


def _running(
    config: BackupConfiguration, activity: Activity, seen: _Seen | None, now: datetime
) -> Progress | None:
    """The backup being made: the daemon's, with the catalog's Running entry's id;
    outside the daemon, a Running entry while a live lock is held."""
    entry = None
    if seen is not None:
        entry = next((b for b in reversed(seen.backups) if b.status is BackupStatus.RUNNING), None)
    progress = activity.running
    if progress is not None:
        if progress.backup_id is None and entry is not None:
            return _with_id(progress, entry.id)
        return progress
    if entry is None or seen is None:
        return None
    try:
        holder = seen.repository.read_lock()
    except BackupctlError:
        return None
    if holder is None or holder.expires_at <= now:
        return None  # a leftover of a run that died: the next apply cleans it up
    return Progress(entry.id, None, 0, len(config.sources), 0, None, entry.started_at)


def _with_id(progress: Progress, backup_id: str) -> Progress:
    return Progress(
        backup_id,
        progress.source,
        progress.sources_done,
        progress.sources_total,
        progress.bytes_stored,
        progress.bytes_expected,
        progress.started_at,
    )


# ------------------------------------------------------------- values


def _summary(record: BackupRecord) -> BackupSummary:
    return BackupSummary(
        id=record.id,
        status=str(record.status),
        created_at=record.created_at,
        completed_at=record.completed_at,
        duration_seconds=record.duration_seconds,
        size_bytes=record.size_bytes,
        added_bytes=_added(record),
        trigger=record.trigger,
        key_thumbprint=record.key_thumbprint,
        verified_at=record.verified_at,
        verification_error=record.verification_error,
        sources=tuple(_source(s) for s in record.sources),
    )


def _source(source: SourceResult) -> SourceSummary:
    return SourceSummary(
        name=source.name,
        kind=source.kind,
        status=str(source.status),
        size_bytes=source.size_bytes,
        added_bytes=source.added_bytes,
        items=source.items,
        error=source.error,
    )


def _added(record: BackupRecord) -> int | None:
    """Format 2: the stored bytes the backup added; None when no source is chunked."""
    added = [s.added_bytes for s in record.sources if s.added_bytes is not None]
    return sum(added) if added else None


def _stored(record: BackupRecord) -> int:
    """What the backup occupies on the storage: format 2 counts what it added
    (chunks it shares with older backups are theirs)."""
    return sum(s.size_bytes if s.added_bytes is None else s.added_bytes for s in record.sources)


def _history(backups: tuple[BackupRecord, ...]) -> tuple[HistoryPoint, ...]:
    """Finished backups, oldest first, evenly thinned to MAX_HISTORY_POINTS
    (the oldest and the newest always kept)."""
    finished = [b for b in backups if b.status is not BackupStatus.RUNNING]
    count = len(finished)
    if count > MAX_HISTORY_POINTS:
        step = (count - 1) / (MAX_HISTORY_POINTS - 1)
        finished = [finished[round(i * step)] for i in range(MAX_HISTORY_POINTS)]
    return tuple(
        HistoryPoint(b.created_at, b.size_bytes, _added(b), b.duration_seconds, str(b.status))
        for b in finished
    )


def _page(backups: tuple[BackupRecord, ...], page: int, page_size: int) -> BackupPage:
    """Page ``page`` (1-based) of the backups, newest first; empty past the last."""
    page = max(1, page)
    page_size = max(1, page_size)
    end = len(backups) - (page - 1) * page_size
    start = max(0, end - page_size)
    items = tuple(_summary(b) for b in reversed(backups[start : max(0, end)]))
    return BackupPage(items, page, page_size, len(backups))


def _age(age: timedelta) -> str:
    """``45 minutes``, ``30 hours``, ``3 days``: as precise as a glance needs."""
    minutes = max(0, int(age.total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = minutes // 60
    if hours < 72:
        return f"{hours} hours"
    return f"{hours // 24} days"


def _hours(hours: int) -> str:
    return "hour" if hours == 1 else f"{hours} hours"
