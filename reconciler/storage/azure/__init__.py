"""Azure Files storage: a repository folder in an Azure file share, over HTTPS REST.

Built on ``azure-storage-file-share``:

* ``client``: the SDK client of one storage (credential, short retry policy).
* ``errors``: SDK errors translated at this boundary into ``reconciler.errors``
  sentences that never contain an account key, a SAS or SDK output.
* ``ranges``: 4 MiB range downloads and uploads with bounded memory.
* ``storage``: ``AzureFilesStorage``, the Storage protocol on top of them.

How the protocol's guarantees are met:

* Atomic commit: an object is uploaded under a temporary name next to its key
  (``temp_name_for``) and then renamed over the key with Rename File
  (``overwrite=True``), a single server-side operation.
* Streaming upload with bounded memory: Azure files have a fixed size, set at
  creation, and Put Range writes at most 4 MiB. The writer buffers one range
  (4 MiB); the first full range (or the close of the writer) creates the file
  with the size known so far, and every later range first grows the file with
  Set File Properties, then uploads. Small objects therefore cost Create File,
  Put Range and Rename File; large ones one extra resize per 4 MiB.
* ``create_exclusive``: the content is written to a temporary file, then
  renamed onto the key with ``overwrite=False``: the service refuses the rename
  when the key exists (ResourceAlreadyExists), atomically with respect to every
  other client, and the object never appears partially written.
* Streaming download: ranges of 4 MiB, each retried here when its body is cut
  off (the SDK does not retry an interrupted body), and checked against the
  ETag read when the stream was opened, so a replaced object is not mixed up.
"""

from reconciler.storage.azure.storage import AzureFilesStorage
from reconciler.storage.locations import (
    AccountKey,
    AzureCredential,
    ClientSecret,
    DefaultCredential,
    SasToken,
)

__all__ = [
    "AccountKey",
    "AzureCredential",
    "AzureFilesStorage",
    "ClientSecret",
    "DefaultCredential",
    "SasToken",
]
