"""The status page's HTML: rendered on the server from ``usecases.status_model``.

    pages    the overview, a configuration, a backup, and the one-file snapshot
    charts   stored size and duration over time as SVG (no script)
    markup   the document shell, tables, status words, and the one escaping rule
    format   sizes, durations, times and ages as a person reads them
    style    the CSS, and the Content-Security-Policy that admits it by hash

No JavaScript at all and nothing from another host: a page works offline, and
the policy forbids every script. Everything here is a pure function of frozen
values; the daemon's server (``daemon.server``) routes requests to it."""

from reconciler.web.pages import (
    render_backup,
    render_configuration,
    render_overview,
    render_problem,
    render_snapshot,
)
from reconciler.web.style import CONTENT_SECURITY_POLICY

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "render_backup",
    "render_configuration",
    "render_overview",
    "render_problem",
    "render_snapshot",
]
