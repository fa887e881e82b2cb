"""backupctl's own error types.

Every error that can reach a user is one of these, with a message that is one
sentence naming the file, field or object concerned. Errors raised by third
party libraries are translated at the boundary (``raise X(...) from exc``) so
that no SDK message or traceback reaches the user, and no secret either.

    BackupctlError
    ├── ConfigError              invalid configuration (file, line, field)
    ├── StorageError             the backup storage failed
    │   ├── ObjectNotFoundError      an object or folder does not exist
    │   ├── ObjectExistsError        exclusive create found the object present
    │   ├── AuthenticationError      credentials were rejected
    │   ├── PermissionDeniedError    authenticated, but not allowed
    │   ├── UnreachableError         server, share or path cannot be reached
    │   ├── StorageFullError         no space left / quota exceeded
    │   └── BackendUnavailableError  the backend is not implemented yet
    ├── CryptoError              key or certificate problem
    │   ├── WrongKeyError            the private key does not match a backup
    │   └── PassphraseRequiredError  an encrypted private key was given no passphrase
    ├── IntegrityError           stored data is damaged, truncated or tampered
    ├── SourceError              a source could not be read or restored
    ├── LockedError              another process holds the repository lock
    ├── PlanError                a saved plan cannot be applied (stale, bad)
    └── RestoreError             a restore target is unusable
"""

from __future__ import annotations


class BackupctlError(Exception):
    """Base of every error shown to a user as one sentence."""


class ConfigError(BackupctlError):
    """The configuration is invalid; the message names file, line and field."""


class StorageError(BackupctlError):
    """The backup storage failed."""


class ObjectNotFoundError(StorageError):
    pass


class ObjectExistsError(StorageError):
    pass


class AuthenticationError(StorageError):
    pass


class PermissionDeniedError(StorageError):
    pass


class UnreachableError(StorageError):
    pass


class StorageFullError(StorageError):
    pass


class BackendUnavailableError(StorageError):
    pass


class CryptoError(BackupctlError):
    pass


class WrongKeyError(CryptoError):
    pass


class PassphraseRequiredError(CryptoError):
    """The private key file is encrypted and no passphrase was given for it."""


class IntegrityError(BackupctlError):
    pass


class SourceError(BackupctlError):
    pass


class LockedError(BackupctlError):
    pass


class PlanError(BackupctlError):
    pass


class RestoreError(BackupctlError):
    pass
