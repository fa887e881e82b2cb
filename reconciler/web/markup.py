"""The few pieces of markup every page shares, and the one escaping rule.

Every value that did not come from this package passes through ``esc`` (text
and attribute values alike: it escapes quotes too), so an error message that
quotes a command's stderr is shown as the text it is."""

from __future__ import annotations

import html
from datetime import datetime
from urllib.parse import quote

from reconciler.usecases.status_model import Health
from reconciler.web import format as fmt
from reconciler.web.style import CSS, SNAPSHOT_CONTENT_SECURITY_POLICY


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def path_segment(value: str) -> str:
    """A value as one URL path segment (a backup id holds no '/', but a value
    from a repository is not trusted to be what it should)."""
    return quote(value, safe="")


_STATUS_TONES = {
    "succeeded": "ok",
    "success": "ok",
    "partiallysucceeded": "warning",
    "locked": "warning",
    "failed": "critical",
    "corrupt": "critical",
    "running": "running",
}


def tone(status: str) -> str:
    """The colour class of a status word: ok, warning, critical, running or unknown."""
    return _STATUS_TONES.get(status.lower(), "unknown")


def status_word(status: str, tag: str = "span", extra_class: str = "status") -> str:
    """A status by word and by colour (never colour alone)."""
    return f'<{tag} class="{extra_class} tone-{tone(status)}">{esc(status)}</{tag}>'


def health_word(health: Health, tag: str = "span") -> str:
    return f'<{tag} class="health health-{health.value}">{esc(health.value)}</{tag}>'


def time_tag(moment: datetime, now: datetime | None = None, *, stacked: bool = False) -> str:
    """A time a person reads, with the exact UTC time for machines; with the
    age beside it (below it when ``stacked``, in a narrow cell) when ``now`` is given."""
    text = f'<time datetime="{esc(fmt.machine_time(moment))}">{esc(fmt.when(moment))}</time>'
    if now is not None:
        age = esc(fmt.relative(moment, now))
        text += f"<small>{age}</small>" if stacked else f' <span class="muted">({age})</span>'
    return text


def document(title: str, body: str, generated_at: datetime, *, snapshot: bool = False) -> str:
    """A whole page: the head (viewport for phones, the inline CSS the policy
    admits by hash; in a snapshot the policy itself, as a meta tag), a header
    with the way back to the overview, ``body`` in ``<main>``, and a footer."""
    policy = (
        '<meta http-equiv="Content-Security-Policy"'
        f' content="{esc(SNAPSHOT_CONTENT_SECURITY_POLICY)}">\n'
        if snapshot
        else ""
    )
    home = (
        '<span class="brand">backupctl status</span>'
        if snapshot
        else '<a class="brand" href="/">backupctl status</a>'
    )
    served = "Snapshot taken" if snapshot else "Generated"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'{policy}<meta name="referrer" content="no-referrer">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><nav>{home}</nav></header>\n"
        f"<main>\n{body}\n</main>\n"
        f"<footer>{served} {time_tag(generated_at)}. Read-only: nothing on this page"
        " changes anything; the configuration files are the only writer.</footer>\n"
        "</body>\n</html>\n"
    )


def table(
    table_id: str | None, headers: list[tuple[str, str]], rows: list[str], caption: str = ""
) -> str:
    """A table in a scrolling frame (a phone scrolls it sideways), with column
    headers a screen reader announces. ``headers`` are (text, class) pairs;
    ``rows`` are finished ``<tr>`` elements."""
    ident = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(
        f'<th scope="col"{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{esc(text)}</th>'
        for text, cls in headers
    )
    cap = f'<caption class="muted">{esc(caption)}</caption>' if caption else ""
    return (
        f'<div class="table-wrap"><table{ident}>{cap}<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{''.join(rows)}</tbody></table></div>"
    )
