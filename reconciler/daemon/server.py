"""The daemon's HTTP server: /metrics, /healthz, the status page and its API.

Read-only: GET and HEAD, anything else is 405. On a loopback address anyone
who can connect may look (that is the machine's own users); on any other
address every route but /metrics and /healthz needs ``Authorization: Bearer
<token>``, the token read once from ``--auth-token-file`` and compared in
constant time. Prometheus and an orchestrator's probe keep working without
it: /metrics holds counts and times, /healthz whether the loop moves.

Each request runs on its own thread (``ThreadingHTTPServer``), so a slow page
holds up neither the reconcile loop nor a scrape."""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from reconciler.daemon.health import Health
from reconciler.daemon.pages import StatusPages
from reconciler.errors import BackupctlError
from reconciler.web import CONTENT_SECURITY_POLICY

DEFAULT_HOST = "127.0.0.1"
OPEN_PATHS = frozenset({"/metrics", "/healthz"})
REQUEST_TIMEOUT_SECONDS = 30
"""A connection that sends nothing for this long is closed (and its thread ends)."""

SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a name other than
    localhost counts as reachable from elsewhere: it may resolve anywhere)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace removed).

    Raises BackupctlError, one sentence without the token, when the file
    cannot be read or holds nothing."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise BackupctlError(f"cannot read the token file {path}: {reason.lower()}") from None
    if not token:
        raise BackupctlError(f"the token file {path} is empty: put the bearer token in it")
    return token


def require_token_off_loopback(host: str, token: str | None) -> None:
    """Raises BackupctlError when ``host`` is not a loopback address and no token is set."""
    if token is None and not is_loopback(host):
        raise BackupctlError(
            f"listening on {host} exposes the status page beyond this machine:"
            " give --auth-token-file FILE (a bearer token) or listen on 127.0.0.1"
        )


class HttpServer:
    """Serves the daemon's routes from a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Callable[[], bytes],
        health: Health,
        pages: StatusPages | None = None,
        token: str | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        require_token_off_loopback(host, token)
        handler = _handler_class(metrics, health, pages, token, on_error)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise BackupctlError(f"cannot listen on {host}:{port}: {reason}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-server", daemon=True
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


def _handler_class(
    metrics: Callable[[], bytes],
    health: Health,
    pages: StatusPages | None,
    token: str | None,
    on_error: Callable[[str], None] | None,
) -> type[BaseHTTPRequestHandler]:
    expected = None if token is None else token.encode()

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_SECONDS
        server_version = "backupctl"
        sys_version = ""

        def do_GET(self) -> None:
            self._serve(send_body=True)

        def do_HEAD(self) -> None:
            self._serve(send_body=False)

        def __getattr__(self, name: str) -> Any:
            # Every other method (POST, PUT, DELETE, ...): nothing here changes anything.
            if name.startswith("do_"):
                return self._not_allowed
            raise AttributeError(name)

        def _not_allowed(self) -> None:
            body = b"method not allowed: this server is read-only (GET and HEAD)\n"
            self._send(405, "text/plain; charset=utf-8", body, [("Allow", "GET, HEAD")])

        def _serve(self, send_body: bool) -> None:
            split = urlsplit(self.path)
            path = split.path
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics(), send_body=send_body)
            elif path == "/healthz":
                healthy, detail = health.report()
                body = (json.dumps(detail) + "\n").encode()
                self._send(200 if healthy else 503, "application/json", body, send_body=send_body)
            elif not self._authorised():
                body = (
                    b"unauthorized: this page needs Authorization: Bearer <token>"
                    b" (the daemon's --auth-token-file)\n"
                )
                headers = [("WWW-Authenticate", 'Bearer realm="backupctl"')]
                self._send(401, "text/plain; charset=utf-8", body, headers, send_body)
            elif pages is None:
                body = b"not found: try /metrics or /healthz\n"
                self._send(404, "text/plain; charset=utf-8", body, send_body=send_body)
            else:
                try:
                    reply = pages.answer(path, split.query)
                except Exception as exc:  # a bug in one page must not end the server's thread
                    if on_error is not None:
                        on_error(f"{self.command} {path}: {type(exc).__name__}: {exc}")
                    body = b"internal error: the daemon's log says what failed\n"
                    self._send(500, "text/plain; charset=utf-8", body, send_body=send_body)
                    return
                self._send(reply.code, reply.content_type, reply.body, send_body=send_body)

        def _authorised(self) -> bool:
            if expected is None:
                return True
            scheme, _, given = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                return False
            return hmac.compare_digest(given.strip().encode(), expected)

        def _send(
            self,
            code: int,
            content_type: str,
            body: bytes,
            headers: list[tuple[str, str]] | None = None,
            send_body: bool = True,
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in SECURITY_HEADERS:
                self.send_header(name, value)
            for name, value in headers or []:
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the daemon's own log

    return Handler
