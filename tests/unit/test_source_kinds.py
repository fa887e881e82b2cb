"""Each kind of source a configuration can name is backed up by its SourceKind.

sources/ sits below spec/ in the layers, so sources/kind.py sees a configured
source only through protocols and writes the kind names again: this holds the
configuration model and the kinds together, with a real tree, a real SQLite
database and a real command.
"""

from __future__ import annotations

import io
import os
import sqlite3
from pathlib import Path
from typing import get_args

from reconciler.sources.kind import kind_of
from reconciler.spec.model import CommandSource, FilesSource, Source, SqliteSource


def test_every_configured_source_is_backed_up_and_read_back_by_its_kind(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "region.json").write_bytes(b'{"region": "west"}\n')
    database = tmp_path / "arm.db"
    with sqlite3.connect(database) as db:
        db.execute("create table plans (name text)")
    db.close()
    sources: tuple[Source, ...] = (
        FilesSource("deployment-inputs", tree, ()),
        SqliteSource("resource-manager", database),
        CommandSource("key-vault", ("printf", "vault export"), None, 30, tmp_path),
    )
    assert {type(source) for source in sources} == set(get_args(Source))
    for source in sources:
        kind = kind_of(source)
        assert kind.name == source.kind
        out = io.BytesIO()
        stored = kind.produce(source, out, tmp_path, {"PATH": os.environ["PATH"]})
        assert stored.content_bytes > 0, source
        assert kind.read_through(io.BytesIO(out.getvalue()), tmp_path) == stored, source
