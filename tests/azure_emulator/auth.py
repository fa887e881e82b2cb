"""Request authorization as Azure Files does it: SharedKey signatures and SAS tokens.

This is written from the REST documentation ("Authorize with Shared Key",
"Create an account SAS", "Create a service SAS"), not from the SDK's signing
code, so that a signing bug in either shows up as a 403 in tests.

SharedKey string-to-sign (File service, version 2015-02-21 and later)::

    VERB \\n Content-Encoding \\n Content-Language \\n Content-Length (empty when 0) \\n
    Content-MD5 \\n Content-Type \\n Date \\n If-Modified-Since \\n If-Match \\n
    If-None-Match \\n If-Unmodified-Since \\n Range \\n
    CanonicalizedHeaders   every x-ms-* header as "name:value\\n", names lower-cased, sorted
    CanonicalizedResource  "/" + account + encoded URI path, then "\\nname:value" for each
                           query parameter (names lower-cased and sorted, values decoded)

With emulator-style URLs (``/ACCOUNT/share/...``) the path already starts with
the account, so the account appears twice in the canonicalized resource.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from tests.azure_emulator import errors

# A request's x-ms-date may be this far off the server clock, as on the service.
CLOCK_SKEW = timedelta(minutes=15)

_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)

# Account SAS strings-to-sign gained the encryption scope field in this version.
_SAS_ENCRYPTION_SCOPE_VERSION = "2020-12-06"


@dataclass(frozen=True)
class Request:
    """What authorization looks at in an HTTP request."""

    method: str
    raw_path: str  # as sent, percent-encoded, without the query
    query: Mapping[str, list[str]]  # decoded
    headers: Mapping[str, str]  # lower-cased names
    account: str
    share: str
    parts: tuple[str, ...]  # decoded path below the share


@dataclass(frozen=True)
class Grant:
    """Who the request was authorized as: the account key, or a SAS's terms."""

    scheme: str  # "SharedKey" or "SAS"
    permissions: str = ""
    resource_types: str = ""  # account SAS only: s, c, o


@dataclass(frozen=True)
class Need:
    """What an operation requires from a SAS: a resource type and one of some permissions."""

    resource_type: str  # "s" service, "c" share, "o" directory or file
    any_of: str  # permission letters, any one of which allows the operation


def sign(key_b64: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key_b64), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def authorize(request: Request, key_b64: str, need: Need, now: datetime) -> Grant:
    """Check the request's credentials and that they allow ``need``.

    Returns the grant; raises ServiceError (403, or 401 without credentials)."""
    if "sig" in request.query:
        grant = verify_sas(request.query, request, key_b64, now)
        check_grant(grant, need)
        return grant
    authorization = request.headers.get("authorization", "")
    if not authorization:
        raise errors.ServiceError(
            401,
            "NoAuthenticationInformation",
            "Server failed to authenticate the request. Please refer to the information in "
            "the www-authenticate header.",
        )
    verify_shared_key(request, authorization, key_b64, now)
    return Grant("SharedKey")


# -- SharedKey ---------------------------------------------------------------


def verify_shared_key(request: Request, authorization: str, key_b64: str, now: datetime) -> None:
    scheme, _, credential = authorization.partition(" ")
    account, _, signature = credential.partition(":")
    if scheme != "SharedKey" or account != request.account:
        raise errors.authentication_failed(
            "The authorization scheme or account in the Authorization header is not valid."
        )
    _check_request_date(request.headers)
    expected = sign(key_b64, string_to_sign(request))
    if not hmac.compare_digest(expected, signature):
        raise errors.authentication_failed(
            "The MAC signature found in the HTTP request is not the same as any computed "
            f"signature. Server used following string to sign: '{string_to_sign(request)}'."
        )


def _check_request_date(headers: Mapping[str, str]) -> None:
    stamp = headers.get("x-ms-date") or headers.get("date")
    if not stamp:
        raise errors.authentication_failed("Request date header not specified.")
    try:
        when = parsedate_to_datetime(stamp)
    except (TypeError, ValueError):
        raise errors.authentication_failed("The request date header is not valid.") from None
    if abs(datetime.now(UTC) - when) > CLOCK_SKEW:
        raise errors.authentication_failed("Request date header too old or in the future.")


def string_to_sign(request: Request) -> str:
    headers = request.headers
    values = [headers.get(name, "") for name in _SIGNED_HEADERS]
    if values[2] == "0":  # Content-Length of zero is signed as empty
        values[2] = ""
    return (
        f"{request.method}\n"
        + "".join(f"{value}\n" for value in values)
        + _canonicalized_headers(headers)
        + _canonicalized_resource(request)
    )


def _canonicalized_headers(headers: Mapping[str, str]) -> str:
    names = [name for name in headers if name.startswith("x-ms-")]
    # The service sorts with a culture-aware comparison that ignores hyphens
    # before anything else; for x-ms-* names that is this key.
    names.sort(key=lambda name: (name.replace("-", ""), name))
    return "".join(f"{name}:{headers[name].strip()}\n" for name in names)


def _canonicalized_resource(request: Request) -> str:
    resource = f"/{request.account}{request.raw_path}"
    for name in sorted(request.query, key=str.lower):
        values = ",".join(sorted(request.query[name]))
        resource += f"\n{name.lower()}:{values}"
    return resource


# -- SAS -----------------------------------------------------------------------


def verify_sas(
    query: Mapping[str, list[str]], request: Request, key_b64: str, now: datetime
) -> Grant:
    """Check a SAS's signature, validity window, protocol and resource.

    Account SAS carry ``ss``/``srt``; service SAS carry ``sr``."""
    params = {name: values[0] for name, values in query.items() if values}
    if "ss" in params or "srt" in params:
        text = _account_sas_string(params, request.account)
        grant = Grant("SAS", params.get("sp", ""), params.get("srt", ""))
        if "f" not in params.get("ss", ""):
            raise errors.authorization_failure(
                "AuthorizationServiceMismatch",
                "This request is not authorized to perform this operation using this service.",
            )
    elif "sr" in params:
        text = _service_sas_string(params, request)
        grant = Grant("SAS", params.get("sp", ""), "sco")
    else:
        raise errors.authentication_failed("The SAS is missing its signed resource (sr or srt).")
    if not hmac.compare_digest(sign(key_b64, text), params.get("sig", "")):
        raise errors.authentication_failed(
            f"Signature did not match. String to sign used was {text}"
        )
    _check_sas_window(params, now)
    if params.get("spr") == "https":
        raise errors.authorization_failure(
            "AuthorizationProtocolMismatch",
            "This request is not authorized to perform this operation using this protocol.",
        )
    return grant


def _account_sas_string(params: Mapping[str, str], account: str) -> str:
    fields = ["sp", "ss", "srt", "st", "se", "sip", "spr", "sv"]
    text = account + "\n" + "".join(params.get(name, "") + "\n" for name in fields)
    if params.get("sv", "") >= _SAS_ENCRYPTION_SCOPE_VERSION:
        text += params.get("ses", "") + "\n"
    return text


def _service_sas_string(params: Mapping[str, str], request: Request) -> str:
    resource = f"/file/{request.account}/{request.share}"
    if params["sr"] == "f":
        resource += "/" + "/".join(request.parts)
    elif params["sr"] != "s":
        raise errors.authentication_failed("The signed resource (sr) is not supported.")
    fields = ["si", "sip", "spr", "sv", "rscc", "rscd", "rsce", "rscl", "rsct"]
    head = "".join(params.get(name, "") + "\n" for name in ("sp", "st", "se"))
    return head + resource + "\n" + "\n".join(params.get(name, "") for name in fields)


def _check_sas_window(params: Mapping[str, str], now: datetime) -> None:
    expiry = _parse_sas_time(params.get("se", ""))
    start = _parse_sas_time(params["st"]) if params.get("st") else None
    if expiry is None or now >= expiry or (start is not None and now < start):
        raise errors.authentication_failed(
            f"Signature not valid in the specified time frame: Start [{params.get('st', '')}] "
            f"- Expiry [{params.get('se', '')}] - Current [{now:%a, %d %b %Y %H:%M:%S GMT}]"
        )


def _parse_sas_time(text: str) -> datetime | None:
    for layout in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def check_grant(grant: Grant, need: Need) -> None:
    """Refuse a SAS whose resource types or permissions do not cover ``need``."""
    if grant.scheme != "SAS":
        return
    if need.resource_type not in grant.resource_types:
        raise errors.authorization_failure(
            "AuthorizationResourceTypeMismatch",
            "This request is not authorized to perform this operation using this resource type.",
        )
    if not set(need.any_of) & set(grant.permissions):
        raise errors.permission_mismatch()


def decode_segments(raw_path: str) -> list[str]:
    """The non-empty segments of a percent-encoded path.

    Decoded before splitting: the SDK encodes the '/' inside a directory path
    as %2F, and the service treats it as a separator (no name may hold '/')."""
    return [segment for segment in unquote(raw_path).split("/") if segment]
