"""Helpers for the end-to-end tests against remote storage (Samba, the Azure Files emulator).

Each test turns the quickstart into a configuration for remote storage by
replacing only its ``storage:`` block (sources and certificate stay), passes
secrets to the CLI through the environment only, and checks that no secret
ever shows up in what a command prints or in what it writes to the storage.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from tests.e2e.conftest import Result, Runner, Workspace, assert_one_clear_error
from tests.e2e.test_quickstart import tree_snapshot

QUICKSTART_STORAGE = "  storage:\n    local:\n      path: ../.backups\n"
QUICKSTART_RETENTION = "  retention:\n    days: 7\n    minBackups: 2\n"
QUICKSTART_TRIGGER = '  trigger: ""\n'

SOURCE_OBJECTS = {
    "deployment-inputs": "deployment-inputs.files.chunks",
    "root-ca": "root-ca.files.chunks",
    "identity": "identity.files.chunks",
    "resource-manager": "resource-manager.sqlite.chunks",
    "key-vault": "key-vault.command.chunks",
}
"""The quickstart's sources and the object each one becomes in a backup folder: its
chunk list (format 2; the chunks themselves are records in ``packs/``)."""

SLOW_SOURCE = """\
    - name: slow-dump
      command:
        backup: ["sh", "-c", "sleep 2; head -c 3000000 /dev/urandom"]
        restore: ["sh", "-c", "cat >/dev/null"]
        timeoutSeconds: 60
"""
"""A source that takes 2 s before it writes 3 MB: the storage can fail meanwhile."""

BIG_SOURCE = SLOW_SOURCE.replace("slow-dump", "big-dump").replace("sleep 2; ", "")
"""3 MB of incompressible data, at once."""


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def days_from_now(days: float) -> str:
    """An ISO 8601 time for ``--now``, ``days`` after the real clock."""
    return iso(datetime.now(UTC) + timedelta(days=days))


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the quickstart no longer contains {old!r}"
    return text.replace(old, new)


@dataclass
class Cli:
    """Runs ``backupctl`` for one test with its secrets in the environment.

    Every value passed through the environment is a secret: each command's
    output is checked at once for every secret seen so far (in the forms
    ``secret_forms`` gives), and for tracebacks."""

    run: Runner
    workspace: Workspace
    env: dict[str, str] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    results: list[Result] = field(default_factory=list)
    _quickstart: str = ""

    def __post_init__(self) -> None:
        self._quickstart = self.workspace.config.read_text()

    @property
    def config(self) -> Path:
        return self.workspace.config

    def configure(
        self,
        storage: str,
        *,
        retention: tuple[int, int] | None = None,
        trigger: str = "",
        extra_sources: str = "",
    ) -> Path:
        """Write the quickstart with ``storage`` (a YAML block starting at
        ``  storage:``) in place of its own; optionally other retention
        (days, minBackups), a trigger and more sources."""
        text = _replace_once(self._quickstart, QUICKSTART_STORAGE, storage)
        if retention is not None:
            days, minimum = retention
            text = _replace_once(
                text,
                QUICKSTART_RETENTION,
                f"  retention:\n    days: {days}\n    minBackups: {minimum}\n",
            )
        if trigger:
            text = _replace_once(text, QUICKSTART_TRIGGER, f"  trigger: {json.dumps(trigger)}\n")
        if extra_sources:
            assert text.rstrip().splitlines()[-1].startswith("        "), "sources must come last"
            text = text.rstrip("\n") + "\n" + extra_sources
        self.config.write_text(text)
        return self.config

    def __call__(self, *args: str | Path, env: Mapping[str, str] | None = None) -> Result:
        """``backupctl ARGS`` with this test's secrets (and ``env`` on top)."""
        full_env = {**self.env, **(env or {})}
        self.secrets.update(full_env.values())
        result = self.run(*args, env=full_env)
        self.results.append(result)
        assert "Traceback" not in result.text, result.text
        assert_no_secret(
            self.secrets, {f"output of backupctl {_words(args)}": result.text.encode()}
        )
        return result

    def ok(self, *args: str | Path, env: Mapping[str, str] | None = None) -> Result:
        """As calling this object, and the command must exit 0."""
        result = self(*args, env=env)
        assert result.code == 0, result.text
        return result

    # -- the usual commands --------------------------------------------------------

    def apply(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        return self("apply", "-f", self.config, *args, env=env)

    def listing(self, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """``backups list --output json``: the backups, oldest first."""
        result = self.ok("backups", "list", "-f", self.config, "--output", "json", env=env)
        backups: list[dict[str, Any]] = json.loads(result.out)["backups"]
        return backups

    def restore_and_compare(self, target: Path, backup: str = "latest") -> None:
        """Restore ``backup`` to ``target`` and compare it with the sample region."""
        result = self.ok(
            "restore",
            "-f",
            self.config,
            "--backup",
            backup,
            "--key",
            self.workspace.private_key,
            "--to",
            target,
        )
        assert "restored 5 sources" in result.out, result.out
        assert_restored_sample_region(self.workspace, target)


def _words(args: Iterable[str | Path]) -> str:
    return " ".join(str(a) for a in args)


def assert_one_sentence(result: Result, *fragments: str) -> None:
    """``assert_one_clear_error``, and stderr is a single line: one sentence."""
    assert_one_clear_error(result, *fragments)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {result.err!r}"


def secret_forms(secret: str) -> set[bytes]:
    """The byte strings that would reveal ``secret`` if they appeared somewhere.

    The text itself (UTF-8, UTF-16-LE as SMB sends names, percent-encoded as in
    a URL); for a SAS token also its signature alone; for a base64 account
    key also the raw key bytes."""
    forms = {secret.encode(), secret.encode("utf-16-le"), quote(secret, safe="").encode()}
    query = parse_qs(secret.lstrip("?"))
    for signature in query.get("sig", []):
        forms |= {signature.encode(), quote(signature, safe="").encode()}
    with contextlib.suppress(binascii.Error, ValueError):
        raw = base64.b64decode(secret, validate=True)
        if len(raw) >= 32:
            forms.add(raw)
    return {form for form in forms if len(form) >= 8}


def assert_no_secret(secrets: Iterable[str], blobs: Mapping[str, bytes]) -> None:
    """No form of any secret occurs in any of ``blobs`` (name -> content)."""
    forms = [form for secret in secrets for form in secret_forms(secret)]
    for name, data in blobs.items():
        for form in forms:
            # The message does not repeat the secret.
            assert form not in data, f"a secret appears in {name}"


def share_files(root: Path) -> dict[str, bytes]:
    """Every file under a local folder (a Samba share's backing folder)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def assert_restored_sample_region(workspace: Workspace, target: Path) -> None:
    """``target`` holds the quickstart's sources, byte for byte."""
    stamp = workspace.examples / "stamp"
    expected = tree_snapshot(stamp / "deployment")
    del expected["scale-units/su-1.json.tmp"]  # excluded by the configuration
    assert tree_snapshot(target / "deployment-inputs") == expected
    assert tree_snapshot(target / "root-ca") == tree_snapshot(stamp / "ca")
    assert tree_snapshot(target / "identity") == tree_snapshot(stamp / "identity")
    with sqlite3.connect(target / "resource-manager" / "resource-manager.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        restored_rows = list(db.iterdump())
    with sqlite3.connect(stamp / "arm" / "resource-manager.db") as db:
        assert restored_rows == list(db.iterdump())
    assert (target / "key-vault" / "key-vault.dump").read_bytes() == vault_export(workspace)


def vault_export(workspace: Workspace) -> bytes:
    """What the key-vault source's backup command prints: plaintext to look for."""
    vaultctl = workspace.examples / "stamp" / "bin" / "vaultctl"
    return subprocess.run(
        [str(vaultctl), "export"], capture_output=True, check=True, cwd=workspace.examples
    ).stdout


def made_backup(result: Result) -> str:
    """The id of the Succeeded backup an apply reports having made."""
    assert result.code == 0, result.text
    match = re.search(r"backup\.run: done: backup (\S+) Succeeded", result.out)
    assert match is not None, result.out
    return match[1]


def catalog(data: bytes) -> dict[str, str]:
    """A repository's ``catalog.json`` as {backup id: status}, oldest first."""
    return {b["id"]: b["status"] for b in json.loads(data)["backups"]}


def succeeded_ids(backups: list[dict[str, Any]]) -> list[str]:
    return [b["id"] for b in backups if b["status"] == "Succeeded"]


@contextlib.contextmanager
def stop_when(
    condition: Callable[[], bool], stop: Callable[[], None], timeout: float = 30.0
) -> Iterator[threading.Event]:
    """Run the block while a thread waits for ``condition`` and then calls ``stop``.

    The event yielded is set once ``stop`` has run; the thread is joined when
    the block exits. Exceptions of ``condition`` (a folder not there yet)
    count as False."""
    stopped = threading.Event()
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done.is_set():
            met = False
            with contextlib.suppress(Exception):
                met = condition()
            if met:
                stop()
                stopped.set()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, name="stop-storage", daemon=True)
    thread.start()
    try:
        yield stopped
    finally:
        done.set()
        thread.join()


@dataclass(frozen=True)
class Format2Objects:
    """A format 2 repository's files ({path inside the repository: content}) by kind."""

    files: Mapping[str, bytes]

    def under(self, folder: str, suffix: str = "") -> dict[str, bytes]:
        return {k: v for k, v in self.files.items() if k.startswith(folder) and k.endswith(suffix)}

    @property
    def packs(self) -> dict[str, bytes]:
        return self.under("packs/", ".pack")

    @property
    def index(self) -> dict[str, bytes]:
        return self.under("index/")

    @property
    def data_keys(self) -> dict[str, bytes]:
        return self.under("keys/data/", ".json")

    def backup(self, backup_id: str) -> set[str]:
        prefix = f"backups/{backup_id}/"
        return {k[len(prefix) :] for k in self.files if k.startswith(prefix)}


def assert_format2_layout(files: Mapping[str, bytes], backup_ids: Iterable[str]) -> Format2Objects:
    """``files`` is a format 2 repository holding ``backup_ids``: the format marker,
    the index key record, data key records, packs, an index, and in each backup
    folder its manifest and one chunk list per source (no whole objects)."""
    stored = Format2Objects(files)
    assert json.loads(files["format.json"])["version"] == 2
    assert "keys/index.json" in files
    assert stored.data_keys and stored.packs, sorted(files)
    assert any(k.startswith("index/deltas/") or k.startswith("index/shards/") for k in files)
    for backup_id in backup_ids:
        assert stored.backup(backup_id) == {"manifest.json", *SOURCE_OBJECTS.values()}
    assert not [k for k in files if k.endswith(".zst.enc")], "a whole (format 1) object"
    return stored
