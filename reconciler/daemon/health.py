"""Liveness of the loop, and the HTTP server for ``/metrics`` and ``/healthz``.

The loop is healthy while it runs and shows progress: a finished tick, a
source backed up, or any write to the storage (a long upload writes
continuously). When none of these happened for ``stalled_after`` seconds (three
intervals), ``/healthz`` answers 503, so that an orchestrator restarts a daemon
stuck on a hung share. Liveness uses the real monotonic clock, whatever clock
the loop schedules by."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from reconciler.errors import BackupctlError


class Health:
    def __init__(self, stalled_after: float, monotonic: Callable[[], float] = time.monotonic):
        self._stalled_after = stalled_after
        self._monotonic = monotonic
        self._last_progress = monotonic()
        self._running = False
        self._ticks = 0

    def started(self) -> None:
        self._running = True
        self.beat()

    def stopped(self) -> None:
        self._running = False

    def beat(self) -> None:
        """Record progress (called from the loop thread; a float store is atomic)."""
        self._last_progress = self._monotonic()

    def tick_finished(self) -> None:
        self._ticks += 1
        self.beat()

    def report(self) -> tuple[bool, dict[str, object]]:
        """Whether the loop is healthy, and why, for the /healthz body."""
        idle = self._monotonic() - self._last_progress
        healthy = self._running and idle <= self._stalled_after
        status = "ok" if healthy else ("stopped" if not self._running else "stalled")
        return healthy, {
            "status": status,
            "ticks": self._ticks,
            "secondsSinceProgress": round(idle, 1),
            "stalledAfterSeconds": self._stalled_after,
        }


class MetricsServer:
    """Serves /metrics and /healthz from a background thread."""

    def __init__(self, host: str, port: int, metrics: Callable[[], bytes], health: Health) -> None:
        handler = _handler_class(metrics, health)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise BackupctlError(f"cannot listen on {host}:{port}: {reason}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-server", daemon=True
        )

    @property
    def address(self) -> str:
        """HOST:PORT actually bound (the port is chosen by the system for port 0)."""
        host, port = self._server.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else host
        return f"[{host_text}]:{port}" if ":" in host_text else f"{host_text}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(metrics: Callable[[], bytes], health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics())
            elif path == "/healthz":
                healthy, detail = health.report()
                body = (json.dumps(detail) + "\n").encode()
                self._send(200 if healthy else 503, "application/json", body)
            else:
                body = b"not found: try /metrics or /healthz\n"
                self._send(404, "text/plain; charset=utf-8", body)

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the daemon's own log

    return Handler
