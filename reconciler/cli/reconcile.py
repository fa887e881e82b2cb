"""``backupctl plan`` and ``backupctl apply`` (live, or a saved plan)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.common import (
    TimeParam,
    UserFacingExit,
    config_option,
    echo_err,
    fail,
    handle_errors,
    load,
    report_error,
)
from reconciler.cli.progress import TransferProgress
from reconciler.errors import BackupctlError, ConfigError, PlanError
from reconciler.reconcile.apply import Outcome, OutcomeStatus
from reconciler.reconcile.plan import ConfigurationPlan
from reconciler.reconcile.prepared import Prepared, prepare
from reconciler.reconcile.render import render_json, render_markdown, render_text
from reconciler.reconcile.savedplan import (
    SavedInputs,
    read_plan_file,
    stale_plan_reason,
    write_plan_file,
)
from reconciler.reconcile.session import make_plan, reconcile
from reconciler.reconcile.state import ObservedState
from reconciler.spec.model import BackupConfiguration
from reconciler.timeutil import now_utc

if TYPE_CHECKING:
    from reconciler.backup.engine import SourceEvent


def target_option(func: Any) -> Any:
    return click.option(
        "--target",
        "targets",
        multiple=True,
        metavar="NAME",
        help="Only this configuration (repeatable).",
    )(func)


def select_targets(
    configs: list[BackupConfiguration], targets: tuple[str, ...], path: Path
) -> list[BackupConfiguration]:
    """The configurations ``--target`` names (all without it). Raises ConfigError."""
    if not targets:
        return configs
    names = {c.name for c in configs}
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise ConfigError(
            f"{path} has no configuration named {', '.join(map(repr, unknown))}"
            f" (it has: {', '.join(sorted(names))})"
        )
    return [c for c in configs if c.name in targets]


@click.command()
@config_option
@target_option
@click.option(
    "--output",
    "output",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(path_type=Path),
    help="Also save the plan to this file, for `backupctl apply PLANFILE`.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to do, 2 when changes are pending, 1 on error.",
)
@click.option("--now", type=TimeParam(), help="Evaluate schedule and retention as of this time.")
@handle_errors
def plan(
    config_path: Path,
    targets: tuple[str, ...],
    output: str,
    out_file: Path | None,
    detailed_exitcode: bool,
    now: datetime | None,
) -> None:
    """Show what apply would do now; changes nothing."""
    configs = select_targets(load(config_path), targets, config_path)
    moment = now or now_utc()
    entries = []
    failed = False
    for config in configs:
        try:
            prepared = prepare(config)
            configuration_plan, observed = make_plan(prepared, moment)
        except BackupctlError as exc:
            report_error(f"{config.name}: ", exc)
            failed = True
            continue
        entries.append((configuration_plan, config, observed, prepared.credentials))
    plans = [e[0] for e in entries]
    if plans or not failed:  # a plan of nothing at all would read as "no changes"
        if output == "json":
            click.echo(render_json(plans, moment), nl=False)
        elif output == "markdown":
            click.echo(render_markdown(plans, moment), nl=False)
        else:
            click.echo(render_text(plans), nl=False)
    if failed:
        raise UserFacingExit(1)
    if out_file is not None:
        write_plan_file(out_file, config_path, moment, entries)
        echo_err(f"saved the plan to {out_file}; apply it with `backupctl apply {out_file}`")
    if detailed_exitcode and any(p.actions for p in plans):
        raise UserFacingExit(2)


@click.command()
@click.argument("plan_file", required=False, type=click.Path(path_type=Path))
@click.option(
    "-f",
    "--file",
    "config_path",
    type=click.Path(path_type=Path),
    help="A configuration file, or a folder of *.yaml/*.yml files.",
)
@target_option
@click.option("--now", type=TimeParam(), help="Evaluate schedule and retention as of this time.")
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for a repository another process has locked (0: fail at once).",
)
@handle_errors
def apply(
    plan_file: Path | None,
    config_path: Path | None,
    targets: tuple[str, ...],
    now: datetime | None,
    lock_timeout: float,
) -> None:
    """Reconcile: make the storage match the configuration (-f PATH), or apply a saved
    plan exactly (PLANFILE)."""
    if (plan_file is None) == (config_path is None):
        fail("give either -f PATH (plan and apply now) or a PLANFILE saved by `plan --out`")
    if plan_file is not None:
        if targets or now:
            fail("a saved plan is applied as it was made: --target and --now do not apply")
        _apply_saved(plan_file, lock_timeout)
        return
    assert config_path is not None
    configs = select_targets(load(config_path), targets, config_path)
    moment = now or now_utc()
    _apply_all(
        [(config, prepare_or_none(config), None) for config in configs], moment, lock_timeout
    )


def prepare_or_none(config: BackupConfiguration) -> Prepared | BackupctlError:
    try:
        return prepare(config)
    except BackupctlError as exc:
        return exc


Check = Callable[[ConfigurationPlan, ObservedState], None]


def _apply_all(
    work: list[tuple[BackupConfiguration, Prepared | BackupctlError, Check | None]],
    moment: datetime,
    lock_timeout: float = 0.0,
) -> None:
    failed = False
    progress = TransferProgress()
    for config, prepared, check in work:
        name = config.name
        try:
            if isinstance(prepared, BackupctlError):
                raise prepared
            _, outcomes = reconcile(
                prepared,
                moment,
                lock_command="backupctl apply",
                on_plan=_print_plan,
                on_outcome=functools.partial(_print_outcome, name),
                on_source=functools.partial(_source_event, name, progress),
                check=check,
                lock_timeout=lock_timeout,
                on_bytes=progress.advance,
            )
        except PlanError as exc:
            report_error("", exc)
            failed = True
            continue
        except BackupctlError as exc:
            report_error(f"{name}: ", exc)
            failed = True
            continue
        finally:
            progress.finish()
        failed = failed or any(o.status is not OutcomeStatus.DONE for o in outcomes)
    if failed:
        raise UserFacingExit(1)


def _apply_saved(plan_file: Path, lock_timeout: float = 0.0) -> None:
    """Apply a saved plan after proving nothing it was made from has changed."""
    saved = read_plan_file(plan_file)
    configs = {c.name: c for c in load(saved.config_path)}
    work: list[tuple[BackupConfiguration, Prepared | BackupctlError, Check | None]] = []
    stale: list[str] = []
    for inputs in saved.inputs:
        config = configs.get(inputs.name)
        if config is None:
            stale.append(f"{inputs.name} is no longer in {saved.config_path}")
            continue
        prepared = prepare(config)
        actions = saved.actions_of(inputs.name)
        reason = stale_plan_reason(inputs, actions, config, prepared.credentials, None, None)
        if reason:
            stale.append(f"{inputs.name} changed since it was made ({reason})")
            continue
        work.append((config, prepared, _staleness_check(inputs, actions, config, prepared)))
    if stale:
        raise PlanError(f"the plan is stale: {'; '.join(stale)}; run plan again")
    _apply_all(work, saved.now, lock_timeout)


def _staleness_check(
    inputs: SavedInputs,
    actions: list[dict[str, Any]],
    config: BackupConfiguration,
    prepared: Prepared,
) -> Check:
    def check(fresh: ConfigurationPlan, observed: ObservedState) -> None:
        reason = stale_plan_reason(inputs, actions, config, prepared.credentials, observed, fresh)
        if reason:
            raise PlanError(
                f"the plan is stale: {config.name} changed since it was made ({reason});"
                " run plan again"
            )

    return check


def _print_plan(plan: ConfigurationPlan) -> None:
    click.echo(render_text([plan]).rsplit("\n", 2)[0])


def _print_outcome(name: str, outcome: Outcome) -> None:
    line = f"{name}: {outcome.action.name}: {outcome.status}: {outcome.message}"
    if outcome.status is OutcomeStatus.DONE:
        click.echo(line)
    else:
        echo_err(f"error: {line}")


def _source_event(name: str, progress: TransferProgress, event: SourceEvent) -> None:
    """A source starts (progress from here on) or ends (its line is printed)."""
    if event.result is None:
        progress.start(f"{name}: backing up {event.source}", event.expected_bytes)
        return
    progress.finish()
    _print_source(name, event)


def _print_source(name: str, event: SourceEvent) -> None:
    if event.result is None:
        return
    result = event.result
    detail = f"{result.size_bytes} bytes stored" if result.error is None else result.error
    click.echo(f"{name}: source {result.name}: {result.status} ({detail})")
