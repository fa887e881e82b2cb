"""Translating Azure SDK errors into ``reconciler.errors`` sentences.

The sentences never contain an account key, a SAS or SDK output.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from reconciler.errors import (
    AuthenticationError,
    ObjectExistsError,
    ObjectNotFoundError,
    PermissionDeniedError,
    StorageError,
    StorageFullError,
    UnreachableError,
)

MISSING = frozenset({"ResourceNotFound", "ParentNotFound"})
_FULL = frozenset({"ShareSizeLimitReached", "ShareQuotaExceeded"})
_THROTTLED = frozenset({"ServerBusy", "InternalError", "OperationTimedOut"})
_REJECTED = frozenset(
    {"AuthenticationFailed", "NoAuthenticationInformation", "InvalidAuthenticationInfo"}
)
_FORBIDDEN = frozenset(
    {
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationSourceIPMismatch",
        "InsufficientAccountPermissions",
        "CannotVerifyCopySource",
        "ShareDisabled",
        "ReadOnlyAttribute",
    }
)


def error_code(exc: HttpResponseError) -> str:
    """The service's error code as a plain string.

    The SDK gives a ``StorageErrorCode`` enum member for known codes and a str
    for others; ``str()`` of the enum is 'StorageErrorCode.X', so take .value."""
    code: Any = getattr(exc, "error_code", None)  # set by the storage SDK, not azure-core
    return str(getattr(code, "value", code) or "")


def is_missing(exc: AzureError) -> bool:
    """Whether the service answered that the file or directory does not exist."""
    return isinstance(exc, HttpResponseError) and error_code(exc) in MISSING


def _network_reason(exc: BaseException) -> str:
    """A short cause for a connection failure, found in the exception chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return " (connection refused)"
        if isinstance(current, socket.gaierror):
            return " (the host name does not resolve)"
        if isinstance(current, TimeoutError) or (
            isinstance(current, OSError) and current.errno == errno.ETIMEDOUT
        ):
            return " (the connection timed out)"
        # azure-core keeps the transport's exception in inner_exception.
        current = (
            current.__cause__ or current.__context__ or getattr(current, "inner_exception", None)
        )
    return ""


@dataclass(frozen=True)
class AzureErrors:
    """The error translation of one storage: the account URL as messages may
    show it (no query), the account, the share and the retries allowed."""

    url: str
    account: str
    share: str
    retry_total: int

    @contextmanager
    def boundary(self, what: str) -> Iterator[None]:
        """Translate SDK errors raised inside the block; ``what`` starts the message."""
        try:
            yield
        except AzureError as exc:
            self.fail(exc, what)

    def fail(self, exc: AzureError, what: str) -> NoReturn:
        # Network errors carry the request URL, SAS included, in their text:
        # do not chain them, so not even a --debug traceback shows it.
        network = isinstance(exc, ServiceRequestError | ServiceResponseError)
        raise self.translate(exc, what) from (None if network else exc)

    def translate(self, exc: AzureError, what: str) -> StorageError:
        """The most specific StorageError for an SDK error, as one sentence."""
        if isinstance(exc, ServiceRequestError):
            return UnreachableError(f"cannot reach Azure Files at {self.url}{_network_reason(exc)}")
        if isinstance(exc, ServiceResponseError):
            return UnreachableError(
                f"{what}: the connection to Azure Files at {self.url} kept breaking off"
            )
        if not isinstance(exc, HttpResponseError) or exc.status_code is None:
            if isinstance(exc, ClientAuthenticationError):
                return AuthenticationError(
                    f"no Entra ID token could be obtained for Azure Files at {self.account} "
                    "(the identity is missing or was rejected)"
                )
            return StorageError(f"{what}: the Azure SDK failed ({type(exc).__name__})")
        return self._translate_response(exc, what)

    def _translate_response(self, exc: HttpResponseError, what: str) -> StorageError:
        code, status = error_code(exc), exc.status_code
        if code in _REJECTED or status == 401:
            return AuthenticationError(
                f"Azure Files at {self.account} rejected the credentials "
                "(account key / SAS / identity)"
            )
        if code in _FORBIDDEN or status == 403:
            return PermissionDeniedError(
                f"{what}: the credentials for Azure Files at {self.account} do not allow it "
                f"({code or 'HTTP 403'})"
            )
        if code == "ShareNotFound":
            return UnreachableError(
                f"the storage account {self.account} has no file share named {self.share}"
            )
        if code in MISSING:
            return ObjectNotFoundError(f"{what}: it does not exist")
        if code == "ResourceAlreadyExists":
            return ObjectExistsError(f"{what}: it already exists")
        if code in _FULL:
            return StorageFullError(f"{what}: the file share {self.share} is full (quota reached)")
        if code in _THROTTLED or (status is not None and status >= 500):
            busy = status == 503 or code == "ServerBusy"
            state = "throttled the request" if busy else "failed the request"
            return UnreachableError(
                f"{what}: Azure Files at {self.account} {state} (HTTP {status} {code}) "
                f"and still did after {self.retry_total} retries; try again later"
            )
        return StorageError(f"{what}: Azure Files answered HTTP {status} {code}".rstrip())
