"""Certificate health as a plan reports it: warn before expiry, refuse after.

Always judged by the real clock, never by ``--now``: a dry run of next week
must not pretend a certificate is still valid, nor hide that it expires soon.
"""

from __future__ import annotations

from datetime import datetime

from reconciler.crypto.certificates import (
    Certificate,
    certificate_validity_problem,
    expires_within,
)
from reconciler.errors import CryptoError
from reconciler.timeutil import format_time

EXPIRY_WARNING_DAYS = 30
_REPLACE_HINT = (
    "make a new one with `backupctl keys create` and point spec.encryption.certificate at it"
)


def certificate_warnings(certificate: Certificate, real_now: datetime) -> tuple[str, ...]:
    """Return the warnings about ``certificate`` at ``real_now`` (empty when healthy).

    Raises CryptoError, one sentence, when it has expired or is not valid yet:
    no backup may then be encrypted to it."""
    problem = certificate_validity_problem(certificate, real_now)
    if problem is not None:
        raise CryptoError(f"{problem}, so backups cannot be encrypted to it; {_REPLACE_HINT}")
    if not expires_within(certificate, real_now, EXPIRY_WARNING_DAYS):
        return ()
    return (
        f"certificate {certificate.thumbprint} ({certificate.subject}) expires on"
        f" {format_time(certificate.not_after)}, within {EXPIRY_WARNING_DAYS} days; before"
        f" then {_REPLACE_HINT}",
    )
