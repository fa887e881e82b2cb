"""Where a repository keeps what: every storage key and backup id, in one place.

Layout under ``<location>/<name>/``::

    format.json                   format marker (name, version)
    settings.json                 applied settings, key history, credential fingerprint
    catalog.json                  summaries of every backup (rebuildable from manifests)
    lock.json                     the writer lock
    backups/<id>/manifest.json    a backup's commit record: exists => backup exists
    backups/<id>/<source>.<kind>.zst.enc
                                  format 1: one encrypted object per source
    backups/<id>/<source>.<kind>.chunks
                                  format 2: the source's chunk list (under the index key)
    keys/index.json               format 2: the index key (check, wrapped, maybe stored)
    keys/data/<key id>.json       format 2: a run's data key, wrapped to the certificate(s)
    packs/, index/                format 2: chunks and their index (``chunkstore``)

Nothing outside ``reconciler.repository`` builds a key: callers ask the
Repository for a backup's objects by backup id and object name.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from reconciler.storage.base import TEMP_MARKER
from reconciler.timeutil import compact

FORMAT_KEY = "format.json"
SETTINGS_KEY = "settings.json"
CATALOG_KEY = "catalog.json"
LOCK_KEY = "lock.json"
BACKUPS_DIR = "backups"
MANIFEST_NAME = "manifest.json"
INDEX_KEY_KEY = "keys/index.json"
DATA_KEYS_DIR = "keys/data"
PACKS_DIR = "packs"
INDEX_POINTER = "index/index.json"
SHARDS_DIR = "index/shards"
DELTAS_DIR = "index/deltas"
RECLAIM_DUE = "index/reclaim-due.json"
"""Present from the start of a prune until the reclaim after it has finished."""
PACK_SUFFIX = ".pack"
RUN_SUFFIX = ".idx"
CHUNK_LIST_SUFFIX = ".chunks"

BACKUP_ID = re.compile(r"(\d{8}T\d{6}Z)-[0-9a-f]{6}")
"""A backup's id: its creation time (UTC, to the second) and six random hex
digits, e.g. ``20261125T120000Z-1a2b3c``. It is also a folder name on the
storage, so nothing that is not an id may be used as one."""
_ID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"

_OBJECT_SUFFIX = {"files": "tar.zst.enc", "sqlite": "sqlite.zst.enc", "command": "dump.zst.enc"}


def new_backup_id(created_at: datetime) -> str:
    """A fresh id: the creation time (sortable, readable on the share) and a random tail."""
    return format_backup_id(created_at, secrets.token_hex(3))


def format_backup_id(created_at: datetime, suffix: str) -> str:
    """The id of a backup created at ``created_at``; ``suffix`` is six hex digits."""
    return f"{compact(created_at)}-{suffix}"


def parse_backup_id(text: str) -> datetime | None:
    """The creation time ``text`` names when it is a backup id, else None
    (folders of other names are not ours)."""
    match = BACKUP_ID.fullmatch(text)
    if match is None:
        return None
    return datetime.strptime(match.group(1), _ID_TIME_FORMAT).replace(tzinfo=UTC)


def object_name(source_name: str, kind: str) -> str:
    """A source's stored object name: says what it is to anyone browsing the share."""
    return f"{source_name}.{_OBJECT_SUFFIX[kind]}"


def chunk_list_name(source_name: str, kind: str) -> str:
    """A format 2 source's chunk list object name."""
    return f"{source_name}.{kind}{CHUNK_LIST_SUFFIX}"


def data_key_key(key_id: str) -> str:
    return f"{DATA_KEYS_DIR}/{key_id}.json"


def is_temporary(name: str) -> bool:
    """True for an object an interrupted atomic write left behind."""
    return TEMP_MARKER in name


def backup_dir(backup_id: str) -> str:
    return f"{BACKUPS_DIR}/{backup_id}"


def manifest_key(backup_id: str) -> str:
    return f"{BACKUPS_DIR}/{backup_id}/{MANIFEST_NAME}"


def object_key(backup_id: str, name: str) -> str:
    return f"{BACKUPS_DIR}/{backup_id}/{name}"
