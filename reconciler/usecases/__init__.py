"""Use cases: what an operator asks of backupctl, as functions returning reports.

Each module is one use case (restore, verify, unlock, queries). A use case
selects backups, takes locks and records results through the layers below
(reconcile, backup, repository, storage, crypto, spec) and returns frozen
dataclasses; it never prints and knows nothing of click. The CLI parses
arguments, calls a use case and formats its report; the daemon calls the same
functions. Nothing here imports ``reconciler.cli`` or ``reconciler.daemon``.
"""
