"""Building the SDK client of one storage: credential, retry policy, timeouts.

One ``ShareClient`` per storage object, with its own short retry policy;
directory and file clients are derived from it (``get_directory_client``/
``get_file_client``), never parsed from URLs, because the SDK misreads
emulator-style URLs (``http://127.0.0.1:PORT/ACCOUNT``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
from azure.core.exceptions import ServiceRequestError
from azure.storage.fileshare import ExponentialRetry, ShareClient

from reconciler.errors import AuthenticationError, StorageError
from reconciler.storage.locations import AccountKey, AzureCredential, ClientSecret, SasToken

CONNECT_TIMEOUT_SECONDS = 10

_SdkCredential = str | AzureNamedKeyCredential | TokenCredential


# -- SDK configuration -------------------------------------------------------------


def _quiet_sdk_loggers() -> None:
    """Keep SDK logs out of user output: they never reach a user, whatever the level.

    Below ERROR the SDK logs request URLs and headers (the HTTP logging policy,
    at INFO) and warnings that Python prints even with logging unconfigured,
    some with a traceback: the failsafe XML parse of a bodiless HEAD error,
    "Incomplete download." and each failed credential of a credential chain.
    The errors raised here already say what went wrong; a debug mode of the
    CLI may lower these levels again."""
    logging.getLogger("azure").setLevel(logging.ERROR)
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.ERROR)


_quiet_sdk_loggers()


class QuickRetry(ExponentialRetry):
    """Exponential backoff in fractions of a second for an interactive tool.

    The SDK default waits about 15 s per retry. Here retry n waits about
    0.25 * 2**(n-1) s (0.25, 0.5, 1, 2 ... with +-20 % jitter), so four retries
    take under 5 s. Each client needs its own instance: azure-core links the
    policy objects of a pipeline in place, and a policy shared by two clients
    would send one client's requests through the other's signing policy."""

    FIRST_BACKOFF = 0.25

    def __init__(self, total: int, sleep: Callable[[float], None]) -> None:
        super().__init__(
            retry_total=total, retry_connect=total, retry_read=total, retry_status=total
        )
        self._sleep = sleep
        # True after a request failed to connect through every retry, until a
        # request gets through again. Meanwhile requests try to connect once:
        # after a backup failed on a dead account, its clean-up and the lock
        # release would otherwise each spend another round of backoff (about
        # 4 s each here, about a minute each with connection timeouts).
        self.unreachable = False

    def configure_retries(self, request: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().configure_retries(request)
        if self.unreachable:
            settings["connect"] = 0  # the first failed connection exhausts it
        return settings

    def send(self, request: Any) -> Any:
        try:
            response = super().send(request)  # type: ignore[no-untyped-call]
        except ServiceRequestError:
            self.unreachable = True
            raise
        self.unreachable = False
        return response

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        base = self.FIRST_BACKOFF * 2 ** max(0, int(settings["count"]) - 1)
        return random.uniform(0.8 * base, 1.2 * base)

    def sleep(self, settings: dict[str, Any], transport: Any) -> None:
        """Wait the backoff with the storage's sleep (the transport's is time.sleep)."""
        backoff = self.get_backoff_time(settings)
        if backoff > 0:
            self._sleep(backoff)


def account_name(account_url: str) -> str:
    """The account name from an account URL.

    ``https://ACCOUNT.file.core.windows.net`` (or any ``ACCOUNT.<domain>``, e.g.
    Azure Stack Hub), or the first path segment for emulator URLs on 127.0.0.1
    or localhost, the only hosts for which the SDK reads it from the path."""
    url = urlsplit(account_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise StorageError(
            f"the Azure Files account URL {public_url(account_url)} is not an https URL"
        )
    if url.hostname in ("127.0.0.1", "localhost"):
        return url.path.strip("/").split("/")[0]
    return url.hostname.split(".")[0]


def public_url(url: str) -> str:
    """A URL without its query: what a message may show (a SAS lives in the query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def make_share_client(
    account_url: str,
    share: str,
    credential: AzureCredential,
    *,
    account: str,
    retry_total: int,
    sleep: Callable[[float], None],
) -> ShareClient:
    """The client of ``share`` in the storage account ``account`` at ``account_url``.

    Raises StorageError for an unusable URL, AuthenticationError for unusable
    credentials."""
    url = public_url(account_url)
    sdk_credential, options = _sdk_credential(credential, account)
    try:
        return ShareClient(
            account_url,
            share,
            credential=sdk_credential,
            retry_policy=QuickRetry(retry_total, sleep),
            connection_timeout=CONNECT_TIMEOUT_SECONDS,
            **options,
        )
    except ValueError as exc:
        if isinstance(sdk_credential, str | AzureNamedKeyCredential):
            raise StorageError(f"cannot use the Azure Files account URL {url}") from exc
        # The SDK refuses bearer tokens over plain http.
        raise AuthenticationError(
            f"cannot use the credentials for Azure Files at {url}: an Entra ID "
            "identity needs an https account URL"
        ) from exc


def _sdk_credential(
    credential: AzureCredential, account: str
) -> tuple[_SdkCredential, dict[str, Any]]:
    """The SDK credential, and client options it needs (token intent for tokens)."""
    if isinstance(credential, AccountKey):
        try:
            base64.b64decode(credential.key, validate=True)
        except (binascii.Error, ValueError):
            raise AuthenticationError(
                f"the account key for Azure Files at {account} is not valid base64"
            ) from None
        return AzureNamedKeyCredential(account, credential.key), {}
    if isinstance(credential, SasToken):
        # A SAS passed as a string reaches the rename source URL too;
        # AzureSasCredential does not, and renames then fail.
        return credential.token.strip().lstrip("?"), {}
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    token: TokenCredential
    if isinstance(credential, ClientSecret):
        token = ClientSecretCredential(
            credential.tenant_id, credential.client_id, credential.secret
        )
    else:
        token = DefaultAzureCredential()
    # Azure Files refuses OAuth data-plane requests without a declared intent.
    return token, {"token_intent": "backup"}
