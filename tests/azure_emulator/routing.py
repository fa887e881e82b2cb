"""The Azure Files REST operations the emulator implements, and how requests reach them.

An operation is chosen by HTTP method plus the ``restype`` and ``comp`` query
parameters, as on the service:

======  ===========  ==========  ===========================================
method  restype      comp        operation
======  ===========  ==========  ===========================================
GET     share                    Get Share Properties (also HEAD)
GET     directory                Get Directory Properties (also HEAD)
PUT     directory                Create Directory
DELETE  directory                Delete Directory
GET     directory    list        List Directories and Files
PUT                              Create File (``x-ms-type: file``)
PUT                  range       Put Range (``x-ms-write: update`` or ``clear``)
PUT                  properties  Set File Properties (resize with ``x-ms-content-length``)
PUT                  rename      Rename File
GET                              Get File (whole, or ``x-ms-range``/``Range``)
HEAD                             Get File Properties
DELETE                           Delete File
======  ===========  ==========  ===========================================
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape, quoteattr

from tests.azure_emulator import auth, errors
from tests.azure_emulator.model import DirNode, FileNode, Node, Share, Store

MAX_RANGE_BYTES = 4 * 1024 * 1024  # Put Range accepts at most 4 MiB per request
_GIB = 1024**3
_DEFAULT_QUOTA_GIB = 5120
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Context:
    """Everything an operation needs: the request, its body, the store, its grant."""

    request: auth.Request
    body: bytes
    store: Store
    grant: auth.Grant
    key_b64: str
    now: datetime
    host: str

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def share(self) -> Share:
        return self.store.share(self.request.share)

    @property
    def parts(self) -> list[str]:
        return list(self.request.parts)


Handler = Callable[[Context], Response]


@dataclass(frozen=True)
class Route:
    handler: Handler
    need: auth.Need
    target: str  # "share": path must stop at the share; "item": must go below it


def find_route(method: str, restype: str | None, comp: str | None, parts: list[str]) -> Route:
    """The operation for a request; UnsupportedHttpVerb when the emulator lacks it."""
    route = _ROUTES.get((method, restype, comp))
    if route is None:
        raise errors.unsupported()
    if route.target == "item" and not parts:
        raise errors.bad_request("InvalidUri", "The requested URI does not name a file.")
    if route.target == "share" and parts:
        raise errors.bad_request("InvalidUri", "Share operations take no path.")
    return route


# -- helpers --------------------------------------------------------------------


def _http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def _file_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _node_headers(node: Node) -> dict[str, str]:
    """The properties the service returns for a file or directory."""
    return {
        "ETag": node.etag,
        "Last-Modified": _http_date(node.modified),
        "x-ms-request-server-encrypted": "true",
        "x-ms-file-id": str(node.file_id),
        "x-ms-file-parent-id": "0",
        "x-ms-file-attributes": "Directory" if isinstance(node, DirNode) else "Archive",
        "x-ms-file-creation-time": _file_time(node.created),
        "x-ms-file-last-write-time": _file_time(node.modified),
        "x-ms-file-change-time": _file_time(node.modified),
        "x-ms-file-permission-key": "4066528134148476695*1",
    }


def _file_headers(node: FileNode) -> dict[str, str]:
    return {
        **_node_headers(node),
        "x-ms-type": "File",
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "x-ms-server-encrypted": "true",
        "x-ms-lease-state": "available",
        "x-ms-lease-status": "unlocked",
    }


def _int_header(context: Context, name: str) -> int:
    value = context.header(name)
    if value is None or not value.isdigit():
        raise errors.bad_request(
            "MissingRequiredHeader" if value is None else "InvalidHeaderValue",
            f"The header {name} is missing or not a non-negative integer.",
        )
    return int(value)


def _parse_range(text: str) -> tuple[int, int | None]:
    match = _RANGE.match(text.strip())
    if match is None:
        raise errors.bad_request("InvalidHeaderValue", "The range header is not valid.")
    start, end = int(match.group(1)), match.group(2)
    if end and int(end) < start:
        raise errors.bad_request("InvalidHeaderValue", "The range header is not valid.")
    return start, int(end) if end else None


# -- shares and directories -------------------------------------------------------


def get_share_properties(context: Context) -> Response:
    share = context.share()
    quota = share.quota_bytes
    gib = _DEFAULT_QUOTA_GIB if quota is None else max(1, -(-quota // _GIB))
    headers = {
        "ETag": share.root.etag,
        "Last-Modified": _http_date(share.root.modified),
        "x-ms-share-quota": str(gib),
    }
    return Response(200, headers)


def get_directory_properties(context: Context) -> Response:
    with context.store.lock:
        node = context.store.directory(context.share(), context.parts)
        return Response(200, _node_headers(node))


def create_directory(context: Context) -> Response:
    node = context.store.create_directory(context.share(), context.parts)
    return Response(201, _node_headers(node))


def delete_directory(context: Context) -> Response:
    context.store.delete_directory(context.share(), context.parts)
    return Response(202)


def list_directory(context: Context) -> Response:
    """List Directories and Files, paged by ``maxresults``/``marker`` (a name)."""
    query = {name: values[0] for name, values in context.request.query.items()}
    prefix = query.get("prefix", "")
    limit = int(query.get("maxresults", "5000"))
    marker = query.get("marker", "")
    nodes = context.store.list_directory(context.share(), context.parts)
    nodes = [n for n in nodes if n.name.startswith(prefix) and n.name >= marker]
    page, rest = nodes[:limit], nodes[limit:]
    entries = "".join(_entry_xml(node) for node in page)
    account = context.request.account
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<EnumerationResults ServiceEndpoint={quoteattr(f'http://{context.host}/{account}/')}"
        f" ShareName={quoteattr(context.request.share)}"
        f" DirectoryPath={quoteattr('/'.join(context.parts))}>"
        f"<Marker>{escape(marker)}</Marker><Prefix>{escape(prefix)}</Prefix>"
        f"<MaxResults>{limit}</MaxResults><Entries>{entries}</Entries>"
        f"<NextMarker>{escape(rest[0].name) if rest else ''}</NextMarker>"
        "</EnumerationResults>"
    )
    return Response(200, {"Content-Type": "application/xml"}, body.encode())


def _entry_xml(node: Node) -> str:
    name = f"<FileId>{node.file_id}</FileId><Name>{escape(node.name)}</Name>"
    if isinstance(node, FileNode):
        size = f"<Content-Length>{len(node.data)}</Content-Length>"
        return f"<File>{name}<Properties>{size}</Properties></File>"
    return f"<Directory>{name}<Properties /></Directory>"


# -- files --------------------------------------------------------------------------


def create_file(context: Context) -> Response:
    if (context.header("x-ms-type") or "").lower() != "file":
        raise errors.bad_request("InvalidHeaderValue", "x-ms-type must be 'file'.")
    size = _int_header(context, "x-ms-content-length")
    node = context.store.create_file(context.share(), context.parts, size)
    return Response(201, _node_headers(node))


def set_file_properties(context: Context) -> Response:
    share = context.share()
    if context.header("x-ms-content-length") is not None:
        size = _int_header(context, "x-ms-content-length")
        node = context.store.resize_file(share, context.parts, size)
    else:
        node = context.store.file(share, context.parts)
    return Response(200, _node_headers(node))


def put_range(context: Context) -> Response:
    text = context.header("x-ms-range") or context.header("range")
    if text is None:
        raise errors.bad_request("MissingRequiredHeader", "x-ms-range is required.")
    start, end = _parse_range(text)
    if end is None:
        raise errors.bad_request("InvalidHeaderValue", "Put Range needs a closed range.")
    if end - start + 1 > MAX_RANGE_BYTES:
        raise errors.body_too_large()
    share, mode = context.share(), context.header("x-ms-write")
    if mode == "update":
        if len(context.body) != end - start + 1:
            raise errors.bad_request("InvalidHeaderValue", "The range and body sizes differ.")
        node = context.store.write_range(share, context.parts, start, context.body)
    elif mode == "clear":
        node = context.store.clear_range(share, context.parts, start, end)
    else:
        raise errors.bad_request("InvalidHeaderValue", "x-ms-write must be update or clear.")
    digest = base64.b64encode(hashlib.md5(context.body).digest()).decode()
    headers = {"ETag": node.etag, "Last-Modified": _http_date(node.modified)}
    return Response(
        201, {**headers, "Content-MD5": digest, "x-ms-request-server-encrypted": "true"}
    )


def get_file(context: Context) -> Response:
    """Get File: the whole content (200) or a range of it (206)."""
    text = context.header("x-ms-range") or context.header("range")
    wanted = None if text is None else _parse_range(text)
    with context.store.lock:
        node = context.store.file(context.share(), context.parts)
        headers, size = _file_headers(node), len(node.data)
        if wanted is None:
            return Response(200, headers, bytes(node.data))
        start, end = wanted
        if start >= size:
            raise errors.invalid_range()
        end = size - 1 if end is None else min(end, size - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return Response(206, headers, bytes(node.data[start : end + 1]))


def get_file_properties(context: Context) -> Response:
    with context.store.lock:
        node = context.store.file(context.share(), context.parts)
        return Response(200, {**_file_headers(node), "Content-Length": str(len(node.data))})


def delete_file(context: Context) -> Response:
    context.store.delete_file(context.share(), context.parts)
    return Response(202)


def rename_file(context: Context) -> Response:
    """Rename File within one share; the source URL must be authorized like the request."""
    source = context.header("x-ms-file-rename-source")
    if not source:
        raise errors.bad_request("MissingRequiredHeader", "x-ms-file-rename-source is required.")
    source_parts = _authorized_source(context, source)
    replace = (context.header("x-ms-file-rename-replace-if-exists") or "").lower() == "true"
    share = context.share()
    context.store.rename_file(share, source_parts, context.parts, replace)
    node = context.store.file(share, context.parts)
    return Response(200, _node_headers(node))


def _authorized_source(context: Context, source: str) -> list[str]:
    """The decoded path of a rename source in the request's share.

    A request authorized by SAS must carry a valid SAS on its source URL too:
    the service does not extend the destination's SAS to the source."""
    url = urlsplit(source)
    segments = auth.decode_segments(url.path)
    request = context.request
    if len(segments) < 3 or segments[0] != request.account or segments[1] != request.share:
        raise errors.bad_request("InvalidSourceUri", "The rename source is not in this share.")
    parts = segments[2:]
    if context.grant.scheme == "SAS":
        query = parse_qs(url.query, keep_blank_values=True)
        if "sig" not in query:
            raise errors.ServiceError(
                403, "CannotVerifyCopySource", "The rename source carries no authorization."
            )
        source_request = auth.Request(
            "PUT", url.path, query, {}, request.account, request.share, tuple(parts)
        )
        grant = auth.verify_sas(query, source_request, context.key_b64, context.now)
        auth.check_grant(grant, auth.Need("o", "rwd"))
    return parts


_READ_SHARE = auth.Need("c", "r")
_READ = auth.Need("o", "r")
_WRITE = auth.Need("o", "w")
_CREATE = auth.Need("o", "cw")

_ROUTES: dict[tuple[str, str | None, str | None], Route] = {
    ("GET", "share", None): Route(get_share_properties, _READ_SHARE, "share"),
    ("HEAD", "share", None): Route(get_share_properties, _READ_SHARE, "share"),
    ("GET", "directory", None): Route(get_directory_properties, _READ, "any"),
    ("HEAD", "directory", None): Route(get_directory_properties, _READ, "any"),
    ("PUT", "directory", None): Route(create_directory, _CREATE, "item"),
    ("DELETE", "directory", None): Route(delete_directory, auth.Need("o", "d"), "item"),
    ("GET", "directory", "list"): Route(list_directory, auth.Need("c", "l"), "any"),
    ("PUT", None, None): Route(create_file, _CREATE, "item"),
    ("PUT", None, "range"): Route(put_range, _WRITE, "item"),
    ("PUT", None, "properties"): Route(set_file_properties, _WRITE, "item"),
    ("PUT", None, "rename"): Route(rename_file, _CREATE, "item"),
    ("GET", None, None): Route(get_file, _READ, "item"),
    ("HEAD", None, None): Route(get_file_properties, _READ, "item"),
    ("DELETE", None, None): Route(delete_file, auth.Need("o", "d"), "item"),
}
