"""Tell people what happened: a table artifact per run, Prefect events for alerts, and logs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.logging import get_run_logger

from blocks.notifications import AlertChannel
from connectors.errors import ConnectorError, scrub
from connectors.notifiers import Notifier
from fieldsync import settings
from fieldsync.alerts import conflict_alert, conflict_table
from fieldsync.conflicts import ConflictFinding
from fieldsync.options_service import option_lines_for_conflicts
from fieldsync.store.conflict_store import mark_alerted
from fieldsync.store.db import session_scope
from fieldsync.sync.model import PushReport


def _artifact_key(label: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:100] or "sync"


@task(name="alert-conflicts", cache_policy=NO_CACHE)
def alert_conflicts(new: Sequence[ConflictFinding]) -> int:
    """Each conflict that still owes an alert goes out now: as a Prefect event (automations
    route it), a warning in the run log, and through every channel in FIELDSYNC_ALERT_BLOCKS
    (Slack, email, webhook). A conflict counts as alerted only once every channel took it, so a
    channel that was down is tried again by the next run. Alerting never fails the sync."""
    logger = get_run_logger()
    channels: list[tuple[str, Notifier]] = []
    for name in settings.alert_blocks():
        try:
            block = Block.load(name)
            if not isinstance(block, AlertChannel):
                raise TypeError(f"block {name!r} is not an alert channel")
            channels.append((name, block.notifier()))
        except Exception as exc:  # a broken channel must not stop the sync or other channels
            logger.error("Alert channel %s cannot be used: %s", name, scrub(str(exc)))
    delivered: list[str] = []
    try:
        with session_scope() as session:
            lines = option_lines_for_conflicts(session, new, now=datetime.now(UTC))
    except Exception as exc:  # options enrich an alert; without them it still goes out
        logger.warning("No rescheduling options for the alerts: %s", exc)
        lines = {}
    for f in new:
        alert = conflict_alert(f, lines.get(f.fingerprint, ()))
        emit_event(
            event="fieldsync.conflict.detected",
            resource={
                "prefect.resource.id": f"fieldsync.technician.{f.technician_id}",
                "fieldsync.conflict.kind": f.kind,
                "fieldsync.conflict.severity": f.severity,
            },
            # kind and detail spelled out too, so an automation's template needs no lookup.
            payload={**alert.payload(), "kind": f.kind, "detail": f.detail},
        )
        logger.warning("ALERT %s %s: %s", f.severity, f.kind, f.detail)
        sent = True
        for name, channel in channels:
            try:
                channel.send(alert)
            except ConnectorError as exc:
                sent = False
                logger.error("Alert for %s not sent through %s: %s", f.technician_id, name, exc)
        if sent:
            delivered.append(f.fingerprint)
    if delivered:
        with session_scope() as session:
            mark_alerted(session, delivered)
    return len(delivered)


@task(name="notify", cache_policy=NO_CACHE)
def notify(
    label: str,
    reports: Sequence[PushReport],
    findings: Sequence[ConflictFinding],
    failures: Sequence[str] = (),
) -> str:
    rows = [
        {
            "platform": r.platform,
            "created": r.created,
            "updated": r.updated,
            "deleted": r.deleted,
            "unchanged": r.unchanged,
            "failed": r.failed,
            "first error": r.errors[0] if r.errors else "",
        }
        for r in reports
    ]
    key = _artifact_key(label)
    create_table_artifact(
        key=f"{key}-pushes",
        table=rows
        or [
            {
                "platform": "(none)",
                "created": 0,
                "updated": 0,
                "deleted": 0,
                "unchanged": 0,
                "failed": 0,
                "first error": "",
            }
        ],
        description=f"What {label} pushed, skipped and failed, per platform.",
    )
    # Every run writes the conflicts table, empty or not, so ops always find it in the UI.
    create_table_artifact(
        key=f"{key}-conflicts",
        table=conflict_table(list(findings)),
        description=f"Scheduling conflicts seen by {label}.",
    )
    writes = sum(r.writes for r in reports)
    summary = (
        f"{label}: {writes} changes pushed "
        f"({sum(r.unchanged for r in reports)} unchanged, "
        f"{sum(r.failed for r in reports)} failed), {len(findings)} conflicts"
    )
    emit_event(
        event="fieldsync.sync.completed" if not failures else "fieldsync.sync.failed",
        resource={"prefect.resource.id": f"fieldsync.sync.{key}"},
        payload={"pushes": rows, "conflicts": len(findings), "failures": list(failures)},
    )
    get_run_logger().info(summary)
    return summary
