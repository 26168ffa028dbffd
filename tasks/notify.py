"""Tell people what happened: a table artifact per run, Prefect events for alerts, and logs."""

from __future__ import annotations

import re
from collections.abc import Sequence

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.logging import get_run_logger

from fieldsync.conflicts import ConflictFinding
from fieldsync.sync.model import PushReport


def _artifact_key(label: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:100] or "sync"


@task(name="alert-conflicts", cache_policy=NO_CACHE)
def alert_conflicts(new: Sequence[ConflictFinding]) -> int:
    """The seam where conflict alerts leave the system: each new conflict becomes a Prefect
    event (automations route it to people) and a warning in the run log."""
    logger = get_run_logger()
    for f in new:
        emit_event(
            event="fieldsync.conflict.detected",
            resource={
                "prefect.resource.id": f"fieldsync.technician.{f.technician_id}",
                "fieldsync.conflict.kind": f.kind,
                "fieldsync.conflict.severity": f.severity,
            },
            payload={"appointments": list(f.appointment_ids), "detail": f.detail},
        )
        logger.warning("ALERT %s %s: %s", f.severity, f.kind, f.detail)
    return len(new)


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
    if findings:
        create_table_artifact(
            key=f"{key}-conflicts",
            table=[
                {
                    "technician": f.technician_id,
                    "kind": f.kind,
                    "severity": f.severity,
                    "appointments": ", ".join(f.appointment_ids),
                    "detail": f.detail,
                }
                for f in findings
            ],
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
