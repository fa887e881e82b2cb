"""Azure Files error responses: status, error code and the XML body the SDK parses.

The service answers every failure with an ``x-ms-error-code`` header and, except
for HEAD requests, an XML body ``<Error><Code/><Message/></Error>``. The SDK
reads the code from the header first and the body second, so both are sent.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from xml.sax.saxutils import escape


class ServiceError(Exception):
    """A failure answered to the client as an Azure Files error response."""

    def __init__(self, status: int, code: str, message: str, detail: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def body(self) -> bytes:
        """The XML error document, with the request id and time the service appends."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        message = f"{self.message}\nRequestId:{uuid.uuid4()}\nTime:{stamp}"
        detail = ""
        if self.detail is not None:
            detail = f"<AuthenticationErrorDetail>{escape(self.detail)}</AuthenticationErrorDetail>"
        return (
            '<?xml version="1.0" encoding="utf-8"?>'
            f"<Error><Code>{escape(self.code)}</Code><Message>{escape(message)}</Message>"
            f"{detail}</Error>"
        ).encode()


# Constructors for the errors the emulator produces, with the service's wording.


def authentication_failed(detail: str) -> ServiceError:
    return ServiceError(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization "
        "header is formed correctly including the signature.",
        detail,
    )


def permission_mismatch() -> ServiceError:
    return ServiceError(
        403,
        "AuthorizationPermissionMismatch",
        "This request is not authorized to perform this operation using this permission.",
    )


def authorization_failure(code: str, message: str) -> ServiceError:
    return ServiceError(403, code, message)


def share_not_found() -> ServiceError:
    return ServiceError(404, "ShareNotFound", "The specified share does not exist.")


def resource_not_found() -> ServiceError:
    return ServiceError(404, "ResourceNotFound", "The specified resource does not exist.")


def parent_not_found() -> ServiceError:
    return ServiceError(404, "ParentNotFound", "The specified parent path does not exist.")


def already_exists() -> ServiceError:
    return ServiceError(409, "ResourceAlreadyExists", "The specified resource already exists.")


def type_mismatch() -> ServiceError:
    return ServiceError(
        409,
        "ResourceTypeMismatch",
        "The specified resource type does not match the type of the existing resource.",
    )


def directory_not_empty() -> ServiceError:
    return ServiceError(409, "DirectoryNotEmpty", "The specified directory is not empty.")


def share_full(code: str) -> ServiceError:
    return ServiceError(413, code, "The specified share is full.")


def invalid_range() -> ServiceError:
    return ServiceError(
        416, "InvalidRange", "The range specified is invalid for the current size of the resource."
    )


def body_too_large() -> ServiceError:
    return ServiceError(
        413, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum."
    )


def bad_request(code: str, message: str) -> ServiceError:
    return ServiceError(400, code, message)


def unsupported() -> ServiceError:
    return ServiceError(
        400,
        "UnsupportedHttpVerb",
        "The resource doesn't support the specified HTTP verb (this emulator implements "
        "only the subset of the Azure Files REST API that backupctl uses).",
    )


def server_busy() -> ServiceError:
    return ServiceError(503, "ServerBusy", "The server is currently unable to receive requests.")


def internal_error() -> ServiceError:
    return ServiceError(
        500, "InternalError", "The server encountered an internal error. Please retry."
    )
