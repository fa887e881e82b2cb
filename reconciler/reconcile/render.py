"""Plans as people and programs read them: text, JSON (schemas/plan.schema.json), Markdown."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from reconciler.reconcile.plan import ConfigurationPlan
from reconciler.timeutil import format_time

PLAN_FORMAT_VERSION = 1


def plan_to_json(plans: list[ConfigurationPlan], now: datetime) -> dict[str, Any]:
    return {
        "formatVersion": PLAN_FORMAT_VERSION,
        "now": format_time(now),
        "configurations": [
            {
                "name": p.name,
                "storage": p.location,
                "actions": [
                    {"action": a.name, "reason": a.reason, **a.details()} for a in p.actions
                ],
                **_health_json(p),
            }
            for p in plans
        ],
    }


def _health_json(plan: ConfigurationPlan) -> dict[str, Any]:
    """The certificate new backups are encrypted to and the plan's warnings, as JSON."""
    cert = plan.certificate
    if cert is None:
        return {"warnings": list(plan.warnings)} if plan.warnings else {}
    return {
        "certificate": {
            "thumbprint": cert.thumbprint,
            "subject": cert.subject,
            "key": cert.key_description,
            "notAfter": format_time(cert.not_after),
        },
        "warnings": list(plan.warnings),
    }


def render_json(plans: list[ConfigurationPlan], now: datetime) -> str:
    return json.dumps(plan_to_json(plans, now), indent=2, sort_keys=False) + "\n"


def render_text(plans: list[ConfigurationPlan]) -> str:
    lines: list[str] = []
    total = 0
    for plan in plans:
        lines.append(f"{plan.name}  ({plan.location})")
        lines.extend(f"  ! warning: {warning}" for warning in plan.warnings)
        if not plan.actions:
            lines.append("  no changes: the repository matches the configuration")
        for action in plan.actions:
            total += 1
            lines.append(f"  {action.symbol} {action.name:<19} {action.reason}")
            lines.extend(f"      {detail}" for detail in action.detail_lines())
        lines.append("")
    count = len(plans)
    noun = "configuration" if count == 1 else "configurations"
    if total:
        lines.append(f"Plan: {total} action{'s' if total != 1 else ''} in {count} {noun}.")
    else:
        lines.append(f"No changes in {count} {noun}.")
    return "\n".join(lines) + "\n"


def render_markdown(plans: list[ConfigurationPlan], now: datetime) -> str:
    total = sum(len(p.actions) for p in plans)
    lines = [f"## backupctl plan ({format_time(now)})", ""]
    lines += ["| configuration | storage | actions |", "| --- | --- | --- |"]
    for plan in plans:
        summary = ", ".join(a.name for a in plan.actions) or "no changes"
        lines.append(f"| `{plan.name}` | {_md(plan.location)} | {summary} |")
    lines.append("")
    for plan in plans:
        if not plan.actions and not plan.warnings:
            continue
        lines += [f"### `{plan.name}`", ""]
        for warning in plan.warnings:
            # A blank line after each keeps two warnings from merging into one quote.
            lines += [f"> **Warning:** {_md(warning)}", ""]
        for action in plan.actions:
            lines.append(f"- **`{action.name}`**: {_md(action.reason)}")
            lines.extend(f"  - {_md(detail)}" for detail in action.detail_lines())
        lines.append("")
    lines.append(f"**{total} action{'s' if total != 1 else ''}** in {len(plans)} configuration(s).")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")
