"""``backupctl daemon``: reconcile periodically; serve the status page, metrics and health."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click

from reconciler.cli.common import config_option, handle_errors

DEFAULT_INTERVAL = 300.0
DEFAULT_HOST = "127.0.0.1"
STALLED_AFTER_INTERVALS = 3


class ListenParam(click.ParamType):  # type: ignore[type-arg]
    """HOST:PORT (``[::1]:9100`` for IPv6; port 0 lets the system choose); PORT
    or :PORT alone is 127.0.0.1, this machine only."""

    name = "HOST:PORT"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        text = str(value)
        host, sep, port = text.rpartition(":")
        host = host.strip("[]") if sep else ""
        if not host and not text.startswith("["):
            host = DEFAULT_HOST
        if not host or not port.isdigit() or int(port) > 65535:
            self.fail(f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:9100 or [::1]:9100", param, ctx)
        return host, int(port)


@click.command()
@config_option
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=DEFAULT_INTERVAL,
    show_default=True,
    metavar="SECONDS",
    help="Reconcile at least this often (sooner when a scheduled backup falls due).",
)
@click.option(
    "--listen",
    type=ListenParam(),
    help="Serve the status page (/ and /api/v1/), Prometheus /metrics and /healthz on"
    " HOST:PORT (PORT alone: 127.0.0.1, this machine only).",
)
@click.option(
    "--auth-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Require Authorization: Bearer <the token in FILE> for the status page and API"
    " (/metrics and /healthz stay open); needed when --listen is not a loopback address.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line (time, level, configuration, event, message).",
)
@handle_errors
def daemon(
    config_path: Path,
    interval: float,
    listen: tuple[str, int] | None,
    auth_token_file: Path | None,
    log_format: str,
) -> None:
    """Reconcile every configuration periodically until SIGTERM or SIGINT.

    The configuration is re-read at every tick. On a stop signal a running
    backup is abandoned (never committed, its data removed, the lock
    released) and the daemon exits 0."""
    # Imported here: every other command starts faster without prometheus-client.
    from reconciler.daemon.clock import SystemClock
    from reconciler.daemon.health import Health
    from reconciler.daemon.logs import EventLog
    from reconciler.daemon.loop import Daemon, DaemonStopping
    from reconciler.daemon.metrics import DaemonMetrics
    from reconciler.daemon.pages import StatusPages
    from reconciler.daemon.server import HttpServer, read_token_file, require_token_off_loopback

    # Both checked before anything starts: a daemon that would serve its page
    # to the network unguarded does not start at all.
    token = None if auth_token_file is None else read_token_file(auth_token_file)
    if listen is not None:
        require_token_off_loopback(listen[0], token)
    log = EventLog(sys.stderr, json_lines=log_format == "json")
    metrics = DaemonMetrics()
    health = Health(stalled_after=STALLED_AFTER_INTERVALS * interval)
    clock = SystemClock()
    loop = Daemon(config_path, interval, clock, log, metrics, health)

    def on_signal(number: int, frame: FrameType | None) -> None:
        loop.interrupt(signal.Signals(number).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server = None
    try:
        loop.load()
        if listen is not None:
            pages = StatusPages(loop.state.snapshot, clock.now)
            server = HttpServer(
                listen[0],
                listen[1],
                metrics.exposition,
                health,
                pages,
                token,
                on_error=lambda message: log.error("http.failed", message),
            )
            server.start()
            guard = "with a bearer token" if token is not None else "to this machine only"
            # The address stays the message's last word: scripts and tests read it there.
            log.info(
                "daemon.listening",
                f"serving the status page and /api/v1/ ({guard}), /metrics and /healthz"
                f" on {server.address}",
            )
        log.info("daemon.started", f"reconciling every {interval:g} seconds")
        loop.run()
        log.info("daemon.stopped", "stopped between reconciles")
    except DaemonStopping as stop:
        log.info(
            "daemon.stopped",
            f"stopped by {stop}; the reconcile in progress was abandoned and nothing of it"
            " was committed",
        )
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if server is not None:
            server.stop()
