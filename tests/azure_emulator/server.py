"""The emulator object: a threaded HTTP server speaking a subset of Azure Files REST.

Usage in tests::

    emulator = AzureFilesEmulator().start()
    emulator.create_share("backups", quota_bytes=10 << 20)
    client = ShareClient(emulator.account_url, "backups", credential=emulator.named_key())
    emulator.inject(status=503, times=2)          # the next two requests are throttled
    ...
    emulator.files("backups")                     # {"dir/file": b"..."}
    emulator.stop()

Requests go to ``http://127.0.0.1:PORT/ACCOUNT/share/dir/file`` (the SDK takes
the account from the path for 127.0.0.1). Every request is authorized with the
account key (SharedKey or a SAS signed with it); see ``auth``. Operations are
listed in ``routing``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from tests.azure_emulator import auth, errors, routing
from tests.azure_emulator.faults import Fault, Faults, LoggedRequest, RequestInfo
from tests.azure_emulator.model import Store

SERVICE_VERSION = "2025-11-05"
_MAX_BODY = routing.MAX_RANGE_BYTES + 64 * 1024


class AzureFilesEmulator:
    """An in-memory Azure Files account on 127.0.0.1 with a random free port."""

    def __init__(
        self,
        account_name: str = "devstoreaccount1",
        account_key: str | None = None,
        *,
        quota_error_code: str = "ShareSizeLimitReached",
    ) -> None:
        self.account_name = account_name
        self.account_key = account_key or base64.b64encode(os.urandom(64)).decode()
        self.store = Store(quota_error_code)
        self._faults = Faults()
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None  # kept after stop(): the URL of a dead server

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> AzureFilesEmulator:
        """Listen on a free port; a restart after ``stop()`` reuses the same port,
        so the account URL stays valid (as a real server coming back would)."""
        self._server = _Server(("127.0.0.1", self._port or 0), _Handler, self)
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="azure-files-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a dead server would."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> AzureFilesEmulator:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator was never started")
        return self._port

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account_name}"

    # -- state --------------------------------------------------------------------

    def create_share(self, name: str, quota_bytes: int | None = None) -> None:
        self.store.create_share(name, quota_bytes)

    def set_quota(self, share: str, quota_bytes: int | None) -> None:
        with self.store.lock:
            self.store.share(share).quota_bytes = quota_bytes

    def files(self, share: str) -> dict[str, bytes]:
        """Every file of a share by its '/'-separated path, for assertions."""
        return self.store.files(self.store.share(share))

    def remove(self, share: str, path: str) -> None:
        """Delete a file or a directory tree directly (test clean-up)."""
        parts = [p for p in path.split("/") if p]
        if parts:
            self.store.remove_tree(self.store.share(share), parts)

    # -- credentials ----------------------------------------------------------------

    def account_sas(
        self,
        permission: str = "rwdlc",
        *,
        resource_types: str = "sco",
        expires_in: timedelta = timedelta(hours=2),
        key: str | None = None,
    ) -> str:
        """An account SAS issued with the SDK's generator (or signed with ``key``)."""
        from azure.storage.fileshare import generate_account_sas

        return generate_account_sas(
            self.account_name,
            key or self.account_key,
            resource_types=resource_types,
            permission=permission,
            expiry=datetime.now(UTC) + expires_in,
        )

    def share_sas(
        self,
        share: str,
        permission: str = "rwdlc",
        *,
        expires_in: timedelta = timedelta(hours=2),
    ) -> str:
        """A service SAS for one share, issued with the SDK's generator."""
        from azure.storage.fileshare import generate_share_sas

        return generate_share_sas(
            self.account_name,
            share,
            self.account_key,
            permission=permission,
            expiry=datetime.now(UTC) + expires_in,
        )

    # -- faults and the request log ------------------------------------------------

    def inject(
        self,
        *,
        status: int | None = None,
        drop_after: int | None = None,
        delay: float = 0.0,
        times: int | None = 1,
        method: str | None = None,
        path_contains: str | None = None,
        predicate: Callable[[RequestInfo], bool] | None = None,
    ) -> Fault:
        """Apply a fault to the next ``times`` matching requests (None: all); see Fault."""
        fault = Fault(status, drop_after, delay, times, method, path_contains, predicate)
        return self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def count(
        self, method: str | None = None, *, comp: str | None = None, path_contains: str = ""
    ) -> int:
        """How many logged requests match a method, a ``comp`` and a path substring."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method)
            and (comp is None or r.comp == comp)
            and path_contains in r.path
        )

    # -- serving ------------------------------------------------------------------

    def _track(self, connection: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _serve(self, handler: _Handler) -> None:
        """Answer one request: faults first, then authorization and the operation."""
        url = urlsplit(handler.path)
        segments = auth.decode_segments(url.path)
        query = parse_qs(url.query, keep_blank_values=True)
        info = RequestInfo(
            handler.command,
            "/" + "/".join(segments[1:]),
            {name: values[0] for name, values in query.items()},
        )
        try:
            body = _read_body(handler)
        except errors.ServiceError as exc:
            handler.close_connection = True
            self._reply(handler, info, _error_response(exc), None)
            return
        fault = self._faults.take(info)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            failure = errors.server_busy() if fault.status == 503 else errors.internal_error()
            self._reply(handler, info, _error_response(failure), None)
            return
        response = self._operate(handler, url, segments, query, body)
        self._reply(handler, info, response, None if fault is None else fault.drop_after)

    def _operate(
        self,
        handler: _Handler,
        url: SplitResult,
        segments: list[str],
        query: dict[str, list[str]],
        body: bytes,
    ) -> routing.Response:
        try:
            if len(segments) < 2 or segments[0] != self.account_name:
                raise errors.bad_request("InvalidUri", "Expected /ACCOUNT/share/path.")
            share, parts = segments[1], segments[2:]
            restype, comp = query.get("restype", [None])[0], query.get("comp", [None])[0]
            route = routing.find_route(handler.command, restype, comp, parts)
            headers = {name.lower(): value for name, value in handler.headers.items()}
            request = auth.Request(
                handler.command, url.path, query, headers, self.account_name, share, tuple(parts)
            )
            now = datetime.now(UTC)
            grant = auth.authorize(request, self.account_key, route.need, now)
            host = handler.headers.get("host", f"127.0.0.1:{self.port}")
            context = routing.Context(request, body, self.store, grant, self.account_key, now, host)
            return route.handler(context)
        except errors.ServiceError as exc:
            return _error_response(exc)

    def _reply(
        self,
        handler: _Handler,
        info: RequestInfo,
        response: routing.Response,
        drop_after: int | None,
    ) -> None:
        with self._lock:
            self._log.append(LoggedRequest(info.method, info.path, info.query, response.status))
        _send(handler, response, drop_after)


def _error_response(exc: errors.ServiceError) -> routing.Response:
    headers = {"x-ms-error-code": exc.code, "Content-Type": "application/xml"}
    return routing.Response(exc.status, headers, exc.body())


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, from Content-Length or chunked transfer encoding."""
    if "chunked" in handler.headers.get("transfer-encoding", "").lower():
        return _read_chunked(handler)
    length = int(handler.headers.get("content-length") or 0)
    if length > _MAX_BODY:
        raise errors.body_too_large()
    return handler.rfile.read(length)


def _read_chunked(handler: BaseHTTPRequestHandler) -> bytes:
    body = bytearray()
    while True:
        size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            handler.rfile.readline()  # the blank line after the last chunk
            return bytes(body)
        body += handler.rfile.read(size)
        handler.rfile.readline()
        if len(body) > _MAX_BODY:
            raise errors.body_too_large()


def _send(
    handler: BaseHTTPRequestHandler, response: routing.Response, drop_after: int | None
) -> None:
    """Write the response; with ``drop_after``, cut the connection part-way through."""
    if drop_after == 0:
        _cut(handler)
        return
    request_version = handler.headers.get("x-ms-version", SERVICE_VERSION)
    headers = {
        "x-ms-request-id": str(uuid.uuid4()),
        "x-ms-version": request_version,
        "Date": format_datetime(datetime.now(UTC), usegmt=True),
        "Server": "Windows-Azure-File/1.0 Microsoft-HTTPAPI/2.0",
        **response.headers,
    }
    headers.setdefault("Content-Length", str(len(response.body)))
    handler.send_response_only(response.status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command == "HEAD":
        return
    if drop_after is None:
        handler.wfile.write(response.body)
        return
    handler.wfile.write(response.body[:drop_after])
    _cut(handler)


def _cut(handler: BaseHTTPRequestHandler) -> None:
    handler.wfile.flush()
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], emulator: AzureFilesEmulator
    ) -> None:
        self.emulator = emulator
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, stopped tests) are normal here: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm
        # and the client's delayed ACK stall every download by about 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._track(self.connection, alive=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._track(self.connection, alive=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""

    def do_GET(self) -> None:
        self.server.emulator._serve(self)

    do_HEAD = do_PUT = do_DELETE = do_POST = do_GET
