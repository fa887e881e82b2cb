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


def status_word(
    status: str, tag: str = "span", extra_class: str = "status", label: str = ""
) -> str:
    """A status by word and by colour (never colour alone). As a table cell
    the word sits in a pill inside it (a cell filled with colour reads as a
    heavy stripe down the table), and the cell carries its column's label."""
    word = esc(status)
    attrs = f'class="{extra_class} tone-{tone(status)}"'
    if tag == "td":
        word = f'<span class="pill">{word}</span>'
        attrs += f' data-label="{esc(label or "Status")}"'
    return f"<{tag} {attrs}>{word}</{tag}>"


def health_word(health: Health, tag: str = "span") -> str:
    word = esc(health.value)
    attrs = f'class="health health-{health.value}"'
    if tag == "td":
        word = f'<span class="pill">{word}</span>'
        attrs += ' data-label="Health"'
    return f"<{tag} {attrs}>{word}</{tag}>"


def breakable(value: str) -> str:
    """``value`` escaped, with a line-break opportunity after each slash and
    backslash: a long location wraps between its folders, not mid-name."""
    return esc(value).replace("/", "/<wbr>").replace("\\", "\\<wbr>")


def short_code(value: str, head: int = 8, tail: int = 4) -> str:
    """A long identifier (a key thumbprint) as its first and last characters,
    enough to tell two apart at a glance; the whole value is the tooltip, and
    a configuration's page shows it in full."""
    if len(value) <= head + tail + 3:
        return f"<code>{esc(value)}</code>"
    return f'<code title="{esc(value)}">{esc(value[:head])}…{esc(value[-tail:])}</code>'


def time_tag(moment: datetime, now: datetime | None = None, *, stacked: bool = False) -> str:
    """A time a person reads, with the exact UTC time for machines; with the
    age beside it (below it when ``stacked``, in a narrow cell) when ``now`` is given."""
    # A narrow cell wraps the date from the time, never the time from "UTC".
    shown = esc(fmt.when(moment)).replace(" UTC", "&nbsp;UTC")
    text = f'<time datetime="{esc(fmt.machine_time(moment))}">{shown}</time>'
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


def cell(label: str, content: str, cls: str = "") -> str:
    """A ``<td>`` carrying its column's header as ``data-label``: a phone's
    card shows each value under these words (CSS reads the attribute)."""
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} data-label="{esc(label)}">{content}</td>'


def table(
    table_id: str | None, headers: list[tuple[str, str]], rows: list[str], caption: str = ""
) -> str:
    """A table with column headers a screen reader announces, in a frame that
    scrolls should a value be too wide; on a phone its rows are shown as cards
    (class ``cards``, see ``style``) so that no column hides off to the side.
    ``headers`` are (text, class) pairs; ``rows`` are finished ``<tr>``
    elements whose cells come from ``cell`` (the card shows their labels)."""
    ident = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(
        f'<th scope="col"{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{esc(text)}</th>'
        for text, cls in headers
    )
    cap = f'<caption class="muted">{esc(caption)}</caption>' if caption else ""
    return (
        f'<div class="table-wrap"><table{ident} class="cards">{cap}<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{''.join(rows)}</tbody></table></div>"
    )
