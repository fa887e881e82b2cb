"""A small Azure Files REST emulator for tests (Azurite has no File service).

See ``server.AzureFilesEmulator``; the supported operations are listed in
``routing``, authorization in ``auth``, fault injection in ``faults``.
"""

from tests.azure_emulator.faults import Fault, LoggedRequest, RequestInfo
from tests.azure_emulator.server import AzureFilesEmulator

__all__ = ["AzureFilesEmulator", "Fault", "LoggedRequest", "RequestInfo"]
