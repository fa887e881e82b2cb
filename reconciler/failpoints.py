"""Failpoints: named places where a test can make this process stop, die or fail.

Crash-safety tests run the real ``backupctl`` in a subprocess and need it to
be at an exact point (the object uploaded but not committed, the manifest
written but the catalog not yet updated...) when they ``kill -9`` it. A
failpoint is a call ``failpoint("after-manifest")`` at such a place; it does
nothing unless the environment variable ``BACKUPCTL_FAILPOINTS`` names it::

    BACKUPCTL_FAILPOINTS="after-manifest:sleep"        # announce, then sleep (to be killed)
    BACKUPCTL_FAILPOINTS="catalog-write#2:exit"        # die (exit 137) the 2nd time it is hit
    BACKUPCTL_FAILPOINTS="object-upload:error,lock-settle:stop"

Entries are separated by commas; ``#N`` fires on the N-th hit only (default:
the first). Actions:

``sleep``  print ``failpoint NAME reached`` on stderr, then sleep for an hour;
``stop``   print the same, then stop the process (SIGSTOP) until it gets SIGCONT;
``exit``   leave at once with status 137, as ``kill -9`` would: no cleanup runs;
``error``  raise ``UnreachableError``, as if the storage had just gone away.

Without the variable a failpoint costs one dictionary lookup.

Points: ``backup-started`` (the catalog lists the Running backup),
``object-upload`` (an object fully written, not yet committed),
``before-manifest``, ``after-manifest``, ``catalog-write`` (a new catalog
written, not yet in place), ``prune-started`` (the doomed backups are out of
the catalog), ``prune-deleting`` (a doomed manifest deleted, its objects not),
``cleanup`` (leftovers removed, the catalog not yet rewritten), ``lock-stale``
(a stale lock was read), ``lock-takeover`` (its takeover claimed),
``migrate-object`` (one object of a migrated backup copied, its manifest not yet)
``restore-staged`` (every source restored into its staging folder, none
moved into place), and for format 2: ``pack-written`` (a pack stored, the
run's index delta not yet), ``reclaim-shards-written`` (new index shards
written, the pointer not yet switched), ``reclaim-pointer-written`` (the
pointer switched, old deltas and shards not yet deleted),
``reclaim-index-switched`` (the index no longer names the doomed packs, which
still exist), ``upgrade-key-written`` (the index key stored, the format marker
still 1) and ``rewrap-data-key`` (one data key record re-wrapped).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from reconciler.errors import UnreachableError

ENVIRONMENT_VARIABLE = "BACKUPCTL_FAILPOINTS"
ACTIONS = ("sleep", "stop", "exit", "error")

_hits: dict[str, int] = {}
_hits_lock = threading.Lock()


def failpoint(name: str) -> None:
    """Do what ``BACKUPCTL_FAILPOINTS`` asks at ``name``, usually nothing.

    Returns normally unless the action is ``exit`` (does not return) or
    ``error`` (raises UnreachableError)."""
    spec = os.environ.get(ENVIRONMENT_VARIABLE)
    if not spec:
        return
    entries = [(hit, action) for point, hit, action in _parse(spec) if point == name]
    if not entries:
        return
    count = _hit(name)
    for hit, action in entries:
        if hit == count:
            _perform(name, action)


def _hit(name: str) -> int:
    with _hits_lock:
        _hits[name] = _hits.get(name, 0) + 1
        return _hits[name]


def _parse(spec: str) -> list[tuple[str, int, str]]:
    """``name[#N]:action`` entries; malformed ones are ignored (this is a test aid)."""
    entries = []
    for item in spec.split(","):
        point, _, action = item.strip().partition(":")
        name, _, count = point.partition("#")
        if action in ACTIONS and name and (not count or count.isdigit()):
            entries.append((name, int(count or 1), action))
    return entries


def _perform(name: str, action: str) -> None:
    if action == "error":
        raise UnreachableError(f"the storage became unreachable (failpoint {name})")
    if action == "exit":
        os._exit(137)
    sys.stderr.write(f"failpoint {name} reached (pid {os.getpid()})\n")
    sys.stderr.flush()
    if action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        time.sleep(3600)
