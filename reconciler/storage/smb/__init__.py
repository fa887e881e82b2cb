"""SMB storage: a repository folder on an SMB 2/3 share, via smbprotocol's smbclient.

* ``session``: the connection and logon of one storage (its own connection
  cache, the choice of SMB 3 encryption, closing at interpreter exit).
* ``errors``: NT statuses translated into ``reconciler.errors`` types whose
  message is one sentence; no SDK text, traceback or password reaches a user.
* ``storage``: ``SmbStorage``, the Storage protocol on top of both, with the
  retries of lost connections and busy files.
* ``paths``: the ``//server/share/folder`` syntax.

Facts about the SDK this relies on are in /work/shared/SDK-NOTES.md.
"""

from reconciler.storage.smb.storage import SmbStorage

__all__ = ["SmbStorage"]
