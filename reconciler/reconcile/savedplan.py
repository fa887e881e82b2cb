"""Saved plans: ``plan --out FILE`` and ``apply FILE``.

A plan file records, per configuration, the actions (as in ``--output
json``) and fingerprints of everything they were computed from: the
configuration document and certificate, the observed repository state, and a
salted scrypt fingerprint of the storage credentials (never a secret value).
``apply FILE`` re-reads all of these; because planning is a pure function,
unchanged inputs at the plan's own time reproduce exactly the saved actions,
and apply executes those. Any difference makes the plan stale and it is
refused with a sentence saying what changed.

File format (JSON, ``kind: backupctl-plan``, ``fileVersion: 1``)::

    {"kind": "backupctl-plan", "fileVersion": 1, "configPath": "regions/",
     "plan": <the --output json document>,
     "inputs": [{"name", "configDigest", "credentials": {...} | null,
                 "observed": {"initialized", "settings", "backups": [[id, status]],
                              "cleanup": [path], "drift": [reason]}}]}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.errors import PlanError
from reconciler.reconcile.plan import ConfigurationPlan
from reconciler.reconcile.render import plan_to_json
from reconciler.reconcile.state import ObservedState
from reconciler.repository.credentials import fingerprint, matches
from reconciler.repository.records import CredentialFingerprint, dumps, settings_to_json
from reconciler.spec.model import BackupConfiguration
from reconciler.storage.factory import Credentials
from reconciler.timeutil import parse_time

FILE_KIND = "backupctl-plan"
FILE_VERSION = 1


def configuration_digest(config: BackupConfiguration) -> str:
    """Changes when the document or the certificate it points to changes."""
    material = f"{config.digest}\0{config.encryption.certificate.thumbprint}"
    return hashlib.sha256(material.encode()).hexdigest()


def observed_summary(observed: ObservedState) -> dict[str, Any]:
    """What a saved plan depends on in the repository, small enough to diff."""
    settings = observed.settings
    return {
        "initialized": observed.initialized,
        "settings": None
        if settings is None
        else hashlib.sha256(dumps(settings_to_json(settings))).hexdigest(),
        "backups": [[b.id, str(b.status)] for b in observed.backups],
        "cleanup": sorted(i.path for i in observed.cleanup),
        "drift": sorted(i.reason for i in observed.drift),
    }


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What changed between two observed summaries, for the stale-plan sentence."""
    changes: list[str] = []
    if old.get("initialized") != new.get("initialized"):
        changes.append(
            "the repository was initialized" if new["initialized"] else "the repository disappeared"
        )
    old_backups = {i: s for i, s in old.get("backups", [])}
    new_backups = {i: s for i, s in new.get("backups", [])}
    added = sorted(set(new_backups) - set(old_backups))
    removed = sorted(set(old_backups) - set(new_backups))
    changed = sorted(
        i for i in set(old_backups) & set(new_backups) if old_backups[i] != new_backups[i]
    )
    for ids, verb in ((added, "added"), (removed, "removed"), (changed, "changed status")):
        if ids:
            noun = "a backup was" if len(ids) == 1 else f"{len(ids)} backups were"
            if verb == "changed status":
                noun = "a backup" if len(ids) == 1 else f"{len(ids)} backups"
                changes.append(f"{noun} changed status ({', '.join(ids[:3])})")
            else:
                changes.append(f"{noun} {verb} ({', '.join(ids[:3])})")
    if old.get("settings") != new.get("settings") and old.get("initialized") == new.get(
        "initialized"
    ):
        changes.append("the applied settings changed")
    if old.get("cleanup") != new.get("cleanup"):
        changes.append("leftovers of an interrupted run changed")
    if old.get("drift") != new.get("drift"):
        changes.append("the catalog changed")
    return "; ".join(changes) or "the repository changed"


@dataclass(frozen=True)
class SavedInputs:
    name: str
    config_digest: str
    credentials: CredentialFingerprint | None
    observed: dict[str, Any]


@dataclass(frozen=True)
class SavedPlan:
    config_path: Path
    now: datetime
    plan: dict[str, Any]
    inputs: tuple[SavedInputs, ...]

    def actions_of(self, name: str) -> list[dict[str, Any]]:
        for entry in self.plan["configurations"]:
            if entry["name"] == name:
                actions: list[dict[str, Any]] = entry["actions"]
                return actions
        return []


def write_plan_file(
    path: Path,
    config_path: Path,
    now: datetime,
    entries: list[tuple[ConfigurationPlan, BackupConfiguration, ObservedState, Credentials | None]],
) -> None:
    """Write a plan file atomically. Raises PlanError when it cannot be written."""
    inputs = []
    for _plan, config, observed, creds in entries:
        fp = None if creds is None else fingerprint(creds.material, creds.principal)
        inputs.append(
            {
                "name": config.name,
                "configDigest": configuration_digest(config),
                "credentials": None
                if fp is None
                else {"algorithm": fp.algorithm, "salt": fp.salt, "hash": fp.hash},
                "observed": observed_summary(observed),
            }
        )
    document = {
        "kind": FILE_KIND,
        "fileVersion": FILE_VERSION,
        # As given: apply resolves it from its own working folder, so a plan
        # made in one checkout applies in another of the same repository.
        "configPath": str(config_path),
        "plan": plan_to_json([e[0] for e in entries], now),
        "inputs": inputs,
    }
    temp = path.with_name(f".{path.name}.tmp")
    try:
        temp.write_bytes(dumps(document))
        temp.replace(path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise PlanError(
            f"cannot write the plan file {path}: {(exc.strerror or str(exc)).lower()}"
        ) from None


def read_plan_file(path: Path) -> SavedPlan:
    """Raises PlanError naming the file when it is missing, damaged or of another version."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"the plan file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise PlanError(f"{path} is not a backupctl plan file (it is not readable JSON)") from None
    if not isinstance(data, dict) or data.get("kind") != FILE_KIND:
        raise PlanError(
            f"{path} is not a backupctl plan file; make one with `backupctl plan --out`"
        )
    if data.get("fileVersion") != FILE_VERSION:
        raise PlanError(
            f"{path} is a plan file of version {data.get('fileVersion')}, this backupctl"
            f" applies version {FILE_VERSION}; run plan again"
        )
    try:
        inputs = tuple(
            SavedInputs(
                name=str(i["name"]),
                config_digest=str(i["configDigest"]),
                credentials=None
                if i["credentials"] is None
                else CredentialFingerprint(
                    str(i["credentials"]["algorithm"]),
                    str(i["credentials"]["salt"]),
                    str(i["credentials"]["hash"]),
                    "",
                ),
                observed=dict(i["observed"]),
            )
            for i in data["inputs"]
        )
        return SavedPlan(
            config_path=Path(data["configPath"]),
            now=parse_time(data["plan"]["now"]),
            plan=data["plan"],
            inputs=inputs,
        )
    except (KeyError, TypeError, ValueError):
        raise PlanError(f"{path} is a damaged plan file; run plan again") from None


def stale_plan_reason(
    saved: SavedInputs,
    saved_actions: list[dict[str, Any]],
    config: BackupConfiguration,
    creds: Credentials | None,
    observed: ObservedState | None,
    plan: ConfigurationPlan | None,
) -> str | None:
    """Why a saved configuration plan may no longer be applied, or None.

    Pass ``observed`` and ``plan`` as None to check only what needs no storage."""
    if configuration_digest(config) != saved.config_digest:
        return "its configuration or certificate was edited"
    if (saved.credentials is None) != (creds is None) or (
        saved.credentials is not None
        and creds is not None
        and not matches(saved.credentials, creds.material)
    ):
        return "its storage credentials changed"
    if observed is None or plan is None:
        return None
    summary = observed_summary(observed)
    if summary != saved.observed:
        return describe_changes(saved.observed, summary)
    fresh = plan_to_json([plan], plan.now)["configurations"][0]["actions"]
    if fresh != saved_actions:
        return "its actions would now differ"
    return None
