"""The deployment examples parse, and call backupctl only with options it has."""

from __future__ import annotations

import re
import shlex
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from reconciler.cli.main import cli
from reconciler.daemon.metrics import DaemonMetrics, ReconcileResult
from reconciler.repository.records import BackupStatus
from tests.unit.planning_fixtures import NOW, backup

DEPLOY = Path(__file__).resolve().parents[2] / "examples" / "deploy"


def options_of(command: str) -> set[str]:
    found = cli.get_command(click.Context(cli), command)
    assert found is not None, f"no command {command}"
    return {o for p in found.params if isinstance(p, click.Option) for o in p.opts}


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec", {})
    if document["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return list(spec.get("template", {}).get("spec", {}).get("containers", []))


def check_invocation(args: list[str]) -> None:
    command, *rest = args
    known = options_of(command)
    used = [a for a in rest if a.startswith("-")]
    assert used and set(used) <= known, f"{command}: {set(used) - known} unknown"


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_kubernetes_and_prometheus_file_is_valid_yaml(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents
    for document in documents:
        for container in containers(document) if "kind" in document else []:
            check_invocation(container["args"])


def test_the_kubernetes_daemon_runs_two_replicas_with_a_health_probe() -> None:
    [deployment] = yaml.safe_load_all(
        (DEPLOY / "kubernetes" / "deployment-daemon.yaml").read_text()
    )
    assert deployment["spec"]["replicas"] == 2
    [container] = containers(deployment)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_kubernetes_daemon_guards_its_status_page_with_a_mounted_token() -> None:
    """It listens on the pod's address, where the daemon refuses to start without one."""
    [deployment] = yaml.safe_load_all(
        (DEPLOY / "kubernetes" / "deployment-daemon.yaml").read_text()
    )
    [container] = containers(deployment)
    args = container["args"]
    assert args[args.index("--listen") + 1].startswith("0.0.0.0:")
    token = Path(args[args.index("--auth-token-file") + 1])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    [name] = [n for n, path in mounts.items() if Path(path) == token.parent]
    secret = volumes[name]["secret"]["secretName"]
    secrets = [
        d
        for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "configuration.yaml").read_text())
        if d and d["kind"] == "Secret" and d["metadata"]["name"] == secret
    ]
    assert token.name in secrets[0]["stringData"]


@pytest.mark.parametrize(
    "unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name
)
def test_systemd_units_call_backupctl_with_options_it_has(unit: Path) -> None:
    text = re.sub(r"\\\n\s*", " ", unit.read_text())
    [exec_start] = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[0].endswith("/backupctl")
    check_invocation(argv[1:])


def exported_metric_names() -> set[str]:
    """Every sample name the daemon's real registry exposes to Prometheus.

    Each metric has a label, so it shows no sample until a series exists:
    record one of everything first, through the calls the daemon makes."""
    metrics = DaemonMetrics()
    record = backup(BackupStatus.SUCCEEDED, age=timedelta(hours=1))
    metrics.reconciled("region-west", ReconcileResult.SUCCESS, pending=0, storage_ok=True)
    metrics.backup_made("region-west", record)
    metrics.repository_seen("region-west", (record,))
    metrics.certificate_seen("region-west", NOW + timedelta(days=90))
    families = list(text_string_to_metric_families(metrics.exposition().decode()))
    silent = [f.name for f in metrics.registry.collect() if not f.samples]
    assert not silent, f"record a series of {silent} above, so their names are checked"
    return {sample.name for family in families for sample in family.samples}


def test_the_daemon_exports_its_metrics_as_prometheus_names_them() -> None:
    exported = exported_metric_names()
    # A counter gains _total, a histogram _bucket/_sum/_count; both have _created.
    assert {
        "backupctl_reconcile_total",
        "backupctl_reconcile_created",
        "backupctl_backup_duration_seconds_bucket",
        "backupctl_backup_duration_seconds_sum",
        "backupctl_backup_duration_seconds_count",
        "backupctl_backup_duration_seconds_created",
        "backupctl_backup_last_success_timestamp_seconds",
    } <= exported
    assert "backupctl_reconcile" not in exported
    assert "backupctl_backup_duration_seconds" not in exported


def test_the_alert_rules_use_only_metrics_the_daemon_exports() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "backupctl-alerts.yaml").read_text())
    exported = exported_metric_names()
    used: set[str] = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            names = set(re.findall(r"backupctl_[A-Za-z0-9_:]+", rule["expr"]))
            assert names <= exported, f"{rule['alert']}: {sorted(names - exported)}"
            used |= names
    assert used, "the rules must use the daemon's metrics"
