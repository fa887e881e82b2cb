"""The status pages: the overview, a configuration, a backup, and the snapshot.

Each function takes the frozen values of ``usecases.status_model`` and returns
a whole HTML document (see ``markup.document``). The page ids and data
attributes are a contract with the browser tests (docs: STATUS15's HTML
contract): ``#configurations`` rows ``tr[data-configuration]`` with a
``td.health``; ``#backups`` rows ``tr[data-backup]`` with a ``td.status``;
``section#running`` with a ``<progress>``; ``svg#chart-size`` and
``svg#chart-duration``; ``a[rel=prev]``/``a[rel=next]``; ``#sources`` rows
``tr[data-source]`` with ``td.status`` and ``td.error``.

The snapshot (``backupctl status --output html``) is one document holding the
overview and every configuration's first page, linked by anchors; its element
ids carry the configuration's name so that they stay unique."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from reconciler.usecases.status_model import (
    Alert,
    BackupPage,
    BackupSummary,
    ConfigurationStatus,
    Health,
    Progress,
    SourceSummary,
    StatusReport,
)
from reconciler.web import format as fmt
from reconciler.web.charts import duration_chart, size_chart
from reconciler.web.markup import (
    breakable,
    cell,
    document,
    esc,
    health_word,
    path_segment,
    short_code,
    status_word,
    table,
    time_tag,
    tone,
)


@dataclass(frozen=True)
class _Links:
    """Where a name or an id leads: the daemon's routes, or anchors in a snapshot."""

    snapshot: bool
    detailed: frozenset[tuple[str, str]] = frozenset()
    """In a snapshot: the backups that have a section of their own."""

    def configuration(self, name: str) -> str:
        if self.snapshot:
            return f"#configuration-{name}"
        return f"/configurations/{path_segment(name)}"

    def backup(self, name: str, backup_id: str) -> str | None:
        if self.snapshot:
            return f"#backup-{name}-{backup_id}" if (name, backup_id) in self.detailed else None
        return f"/configurations/{path_segment(name)}/backups/{path_segment(backup_id)}"

    def suffix(self, *parts: str) -> str:
        """What makes an element id unique in a snapshot ('' on the served pages)."""
        return "".join(f"-{part}" for part in parts) if self.snapshot else ""


_SERVED = _Links(snapshot=False)


# ------------------------------------------------------------------ pages


def render_overview(report: StatusReport) -> str:
    body = "<h1>Backup status</h1>\n" + _overview(report, _SERVED)
    return document("Backup status", body, report.generated_at)


def render_configuration(config: ConfigurationStatus, generated_at: datetime) -> str:
    body = _configuration(config, generated_at, _SERVED, level=1)
    return document(f"{config.name}: backup status", body, generated_at)


def render_backup(configuration: str, backup: BackupSummary, generated_at: datetime) -> str:
    body = _backup(configuration, backup, generated_at, _SERVED, level=1)
    return document(f"{backup.id}: {configuration}", body, generated_at)


def render_problem(title: str, message: str, generated_at: datetime) -> str:
    """A page for a request that has no answer (an unknown configuration, say)."""
    body = (
        f"<h1>{esc(title)}</h1>\n<p>{esc(message)}</p>\n"
        '<p><a href="/">Back to every configuration</a></p>'
    )
    return document(title, body, generated_at)


def render_snapshot(report: StatusReport) -> str:
    """The page once, self-contained (the policy in a meta tag, no link that
    needs the daemon): the overview, then each configuration with its first
    page of backups, and a section for each backup there that did not fully
    succeed, with its sources' errors."""
    detailed = frozenset(
        (config.name, backup.id)
        for config in report.configurations
        for backup in config.backups.items
        if _needs_a_look(backup)
    )
    links = _Links(snapshot=True, detailed=detailed)
    parts = ["<h1>Backup status</h1>", _overview(report, links)]
    for config in report.configurations:
        parts.append(
            f'<section id="configuration-{esc(config.name)}"'
            f' data-configuration="{esc(config.name)}">'
        )
        parts.append(_configuration(config, report.generated_at, links, level=2))
        looks = [b for b in config.backups.items if (config.name, b.id) in detailed]
        if looks:
            parts.append("<h3>Backups that did not fully succeed</h3>")
            for backup in looks:
                parts.append(
                    f'<section id="backup-{esc(config.name)}-{esc(backup.id)}">'
                    + _backup(config.name, backup, report.generated_at, links, level=4)
                    + "</section>"
                )
        parts.append("</section>")
    return document("Backup status", "\n".join(parts), report.generated_at, snapshot=True)


def _needs_a_look(backup: BackupSummary) -> bool:
    if backup.verification_error is not None:
        return True
    return tone(backup.status) not in ("ok", "running")


# ------------------------------------------------------------------ overview


def _overview(report: StatusReport, links: _Links) -> str:
    configs = report.configurations
    if not configs:
        return "<p>No configurations: the configuration files name none.</p>"
    counts = Counter(c.health for c in configs)
    tally = ", ".join(
        f"{counts[h]} {h.value}"
        for h in (Health.CRITICAL, Health.WARNING, Health.UNKNOWN, Health.OK)
        if counts[h]
    )
    plural = "s" if len(configs) != 1 else ""
    headers = [
        ("Configuration", ""),
        ("Health", ""),
        ("Why, and alerts", "why"),
        ("Last success", ""),
        ("Next backup", ""),
        ("Last reconcile", ""),
        ("Backups", "num"),
        ("Key and certificate", ""),
    ]
    rows = [_overview_row(c, report.generated_at, links) for c in configs]
    return (
        f'<p class="summary">{len(configs)} configuration{plural}: {esc(tally)}.</p>\n'
        "<h2>Configurations</h2>\n" + table("configurations", headers, rows)
    )


def _overview_row(config: ConfigurationStatus, now: datetime, links: _Links) -> str:
    name = esc(config.name)
    last = config.last_success
    cells = [
        cell(
            "Configuration",
            f'<a href="{esc(links.configuration(config.name))}">{name}</a>'
            f'<small class="location">{breakable(config.location)}</small>',
            "name",
        ),
        health_word(config.health, tag="td"),
        cell("Why, and alerts", _why(config), "why"),
        cell(
            "Last success",
            time_tag(last.created_at, now, stacked=True) if last else "never",
            "when",
        ),
        cell("Next backup", _next_backup(config, now, stacked=True), "when"),
        cell("Last reconcile", _last_reconcile_short(config, now), "reconcile"),
        cell(
            "Backups",
            f"{config.backup_count}<small>{esc(fmt.size(config.stored_bytes))}</small>",
            "num",
        ),
        cell(
            "Key and certificate",
            f"{short_code(config.key_thumbprint)}<small>certificate expires"
            f" {_day_tag(config.certificate_not_after)}</small>",
            "key",
        ),
    ]
    return f'<tr data-configuration="{name}">{"".join(cells)}</tr>\n'


def _why(config: ConfigurationStatus) -> str:
    """The health's reason, then the alerts; the reason is left out when an
    alert already says it word for word (it usually does: the worst alert is
    why the health is what it is)."""
    said = {a.message for a in config.alerts}
    reason = "" if config.health_reason in said else f"<p>{esc(config.health_reason)}</p>"
    return reason + (_alerts(config.alerts) if config.alerts else "")


def _day_tag(moment: datetime) -> str:
    """A date alone, for a moment years away: the minute would be noise."""
    return f'<time datetime="{esc(fmt.machine_time(moment))}">{esc(fmt.day(moment))}</time>'


def _last_reconcile_short(config: ConfigurationStatus, now: datetime) -> str:
    """The result's word and how long ago, for a narrow cell: the exact time
    and the message are on the configuration's page."""
    last = config.last_reconcile
    if last is None:
        return '<span class="muted">not yet</span>'
    when = fmt.when(last.at)
    return (
        f"{status_word(last.result)}<small>"
        f'<time datetime="{esc(fmt.machine_time(last.at))}" title="{esc(when)}">'
        f"{esc(fmt.relative(last.at, now))}</time></small>"
    )


def _next_backup(config: ConfigurationStatus, now: datetime, stacked: bool = False) -> str:
    if config.frequency_hours is None:
        return "schedule disabled"
    if config.next_backup_at is None:
        return "not known"
    return time_tag(config.next_backup_at, now, stacked=stacked)


def _last_reconcile(config: ConfigurationStatus, now: datetime) -> str:
    last = config.last_reconcile
    if last is None:
        return '<span class="muted">not yet</span>'
    text = f"{status_word(last.result)} {time_tag(last.at, now)}"
    if last.message:
        text += f"<small>{esc(last.message)}</small>"
    return text


def _alerts(alerts: tuple[Alert, ...]) -> str:
    if not alerts:
        return '<span class="muted">none</span>'
    items = "".join(
        f'<li data-kind="{esc(a.kind.value)}" class="tone-{esc(a.severity.value)}">'
        f'<span class="kind">{esc(a.kind.value)}</span> ({esc(a.severity.value)}):'
        f" {esc(a.message)}</li>"
        for a in alerts
    )
    return f'<ul class="alerts">{items}</ul>'


# ------------------------------------------------------------------ configuration


def _configuration(config: ConfigurationStatus, now: datetime, links: _Links, level: int) -> str:
    h, sub = f"h{level}", f"h{level + 1}"
    suffix = links.suffix(config.name)
    parts = [
        f"<{h}>Configuration {esc(config.name)}</{h}>",
        f'<p class="verdict">{health_word(config.health)} {esc(config.health_reason)}</p>',
        _facts(config, now, links),
        f"<{sub}>Alerts</{sub}>",
        _alerts(config.alerts) if config.alerts else "<p>No alerts.</p>",
    ]
    if config.running is not None:
        parts.append(_running(config.running, now, sub, f"running{suffix}"))
    parts.append(f"<{sub}>Size and duration over time</{sub}>")
    parts.append(
        '<div class="charts">'
        "<figure><figcaption>Stored size (line) and what each backup added (bars)"
        f"</figcaption>{size_chart(config.history, f'chart-size{suffix}')}</figure>"
        "<figure><figcaption>Duration</figcaption>"
        f"{duration_chart(config.history, f'chart-duration{suffix}')}</figure>"
        "</div>"
    )
    parts.append(f"<{sub}>Backups</{sub}>")
    parts.append(_backups(config.name, config.backups, now, links, f"backups{suffix}"))
    return "\n".join(parts)


def _facts(config: ConfigurationStatus, now: datetime, links: _Links) -> str:
    last = config.last_success
    if last is None:
        last_text = "never"
    else:
        href = links.backup(config.name, last.id)
        ident = f"<code>{esc(last.id)}</code>"
        if href:
            ident = f'<a href="{esc(href)}">{ident}</a>'
        last_text = f"{time_tag(last.created_at, now)}, {ident}"
    formats = {1: "1", 2: "2 (deduplicating)"}
    fmt_text = (
        formats.get(config.repository_format, str(config.repository_format))
        if config.repository_format is not None
        else "not read (the repository could not be read, or does not exist yet)"
    )
    schedule = (
        f"a backup every {config.frequency_hours} hours"
        if config.frequency_hours is not None
        else "disabled (backups only when the trigger changes)"
    )
    facts = [
        ("Location", f"<code>{breakable(config.location)}</code>"),
        ("Repository format", esc(fmt_text)),
        ("Schedule", esc(schedule)),
        ("Last success", last_text),
        ("Next backup", _next_backup(config, now)),
        ("Last reconcile", _last_reconcile(config, now)),
        ("Backups", f"{config.backup_count}, {esc(fmt.size(config.stored_bytes))} stored"),
        ("Key thumbprint", f"<code>{esc(config.key_thumbprint)}</code>"),
        (
            "Certificate",
            f"{esc(config.certificate_subject)}, expires"
            f" {time_tag(config.certificate_not_after, now)}",
        ),
    ]
    items = "".join(f"<dt>{esc(term)}</dt><dd>{value}</dd>" for term, value in facts)
    return f'<dl class="facts">{items}</dl>'


def _running(progress: Progress, now: datetime, heading: str, section_id: str) -> str:
    if progress.bytes_expected:
        bar = (
            f'<progress value="{min(progress.bytes_stored, progress.bytes_expected)}"'
            f' max="{progress.bytes_expected}" aria-label="Bytes stored">'
        )
        bar += f"{esc(fmt.size(progress.bytes_stored))}</progress>"
    elif progress.sources_total:
        bar = (
            f'<progress value="{progress.sources_done}" max="{progress.sources_total}"'
            f' aria-label="Sources done">{progress.sources_done} of {progress.sources_total}'
            "</progress>"
        )
    else:
        bar = '<progress aria-label="Backup in progress">in progress</progress>'
    doing = (
        f"backing up source <code>{esc(progress.source)}</code>"
        if progress.source
        else "between sources"
    )
    stored = f"{esc(fmt.size(progress.bytes_stored))} stored"
    if progress.bytes_expected:
        stored += f" of about {esc(fmt.size(progress.bytes_expected))}"
    ident = f" <code>{esc(progress.backup_id)}</code>" if progress.backup_id else ""
    return (
        f'<section id="{esc(section_id)}" class="running">'
        f"<{heading}>Backup in progress{ident}</{heading}>{bar}"
        f"<p>{status_word('Running')} {doing};"
        f" {progress.sources_done} of {progress.sources_total} sources done; {stored};"
        f" started {time_tag(progress.started_at, now)}.</p></section>"
    )


def _backups(name: str, page: BackupPage, now: datetime, links: _Links, table_id: str) -> str:
    if page.total == 0:
        return "<p>No backups yet.</p>"
    headers = [
        ("Backup", ""),
        ("Status", ""),
        ("Created", ""),
        ("Duration", "num"),
        ("Size", "num"),
        ("Added", "num"),
        ("Trigger", ""),
        ("Sources", ""),
        ("Verified", ""),
    ]
    rows = [_backup_row(name, b, now, links) for b in page.items]
    return table(table_id, headers, rows) + _pager(page, links)


def _backup_row(name: str, backup: BackupSummary, now: datetime, links: _Links) -> str:
    href = links.backup(name, backup.id)
    ident = f"<code>{esc(backup.id)}</code>"
    if href:
        ident = f'<a href="{esc(href)}">{ident}</a>'
    cells = [
        cell("Backup", ident, "name"),
        status_word(backup.status, tag="td"),
        cell("Created", time_tag(backup.created_at), "when"),
        cell("Duration", _duration(backup.duration_seconds), "num"),
        cell("Size", esc(fmt.size(backup.size_bytes)), "num"),
        cell("Added", _added(backup.added_bytes), "num"),
        cell("Trigger", esc(backup.trigger)),
        cell("Sources", esc(_sources_tally(backup.sources))),
        cell("Verified", _verified(backup), "verified"),
    ]
    return f'<tr data-backup="{esc(backup.id)}">{"".join(cells)}</tr>\n'


def _duration(seconds: float | None) -> str:
    return "—" if seconds is None else esc(fmt.duration(seconds))


def _added(added: int | None) -> str:
    return '<span class="muted">—</span>' if added is None else esc(fmt.size(added))


def _sources_tally(sources: tuple[SourceSummary, ...]) -> str:
    good = sum(1 for s in sources if tone(s.status) == "ok")
    return f"{good} of {len(sources)} succeeded"


def _verified(backup: BackupSummary) -> str:
    if backup.verification_error is not None:
        return f"{status_word('Failed')}<small>{esc(backup.verification_error)}</small>"
    if backup.verified_at is not None:
        return time_tag(backup.verified_at)
    return '<span class="muted">not yet</span>'


def _pager(page: BackupPage, links: _Links) -> str:
    position = (
        f"Page {page.page} of {page.pages} ({page.total} backups, newest first)"
        if not links.snapshot
        else f"The newest {len(page.items)} of {page.total} backups"
    )
    if links.snapshot or page.pages <= 1:
        return f'<p class="muted">{esc(position)}</p>'
    parts = []
    if page.page > 1:
        parts.append(f'<a rel="prev" href="?page={page.page - 1}">← Newer</a>')
    parts.append(f'<span class="muted">{esc(position)}</span>')
    if page.page < page.pages:
        parts.append(f'<a rel="next" href="?page={page.page + 1}">Older →</a>')
    return f'<nav class="pager" aria-label="Pages of backups">{"".join(parts)}</nav>'


# ------------------------------------------------------------------ backup


def _backup(
    configuration: str, backup: BackupSummary, now: datetime, links: _Links, level: int
) -> str:
    h, sub = f"h{level}", f"h{level + 1}"
    config_link = f'<a href="{esc(links.configuration(configuration))}">{esc(configuration)}</a>'
    verification = _verified(backup)
    facts = [
        ("Configuration", config_link),
        ("Status", status_word(backup.status)),
        ("Created", time_tag(backup.created_at, now)),
        ("Completed", time_tag(backup.completed_at, now) if backup.completed_at else "—"),
        ("Duration", _duration(backup.duration_seconds)),
        ("Size", esc(fmt.size(backup.size_bytes))),
        ("Added to the storage", _added(backup.added_bytes)),
        ("Trigger", esc(backup.trigger)),
        ("Key thumbprint", f"<code>{esc(backup.key_thumbprint)}</code>"),
        ("Verified", verification),
    ]
    items = "".join(f"<dt>{esc(term)}</dt><dd>{value}</dd>" for term, value in facts)
    headers = [
        ("Source", ""),
        ("Kind", ""),
        ("Status", ""),
        ("Size", "num"),
        ("Added", "num"),
        ("Items", "num"),
        ("Error", ""),
    ]
    rows = [_source_row(s) for s in backup.sources]
    sources = (
        table(f"sources{links.suffix(configuration, backup.id)}", headers, rows)
        if rows
        else "<p>No sources recorded.</p>"
    )
    return (
        f"<{h}>Backup <code>{esc(backup.id)}</code></{h}>\n"
        f'<dl class="facts">{items}</dl>\n<{sub}>Sources</{sub}>\n{sources}'
    )


def _source_row(source: SourceSummary) -> str:
    cells = [
        cell("Source", esc(source.name), "name"),
        cell("Kind", esc(source.kind)),
        status_word(source.status, tag="td"),
        cell("Size", esc(fmt.size(source.size_bytes)), "num"),
        cell("Added", _added(source.added_bytes), "num"),
        cell("Items", str(source.items), "num"),
        cell("Error", esc(source.error) if source.error else "", "error"),
    ]
    return f'<tr data-source="{esc(source.name)}">{"".join(cells)}</tr>\n'
