"""backupctl: a declarative reconciler for encrypted infrastructure backups.

Layering (imports point down only)::

    cli
     -> reconcile (spec -> observe -> plan -> apply)
         -> backup, restore
             -> storage backends, crypto, sources
                 -> streams (ByteSink, CHUNK_SIZE), errors
"""

__version__ = "0.1.0"
