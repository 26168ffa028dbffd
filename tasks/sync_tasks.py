"""The tasks of every sync flow: fetch → enrich → detect conflicts → plan → push → notify.

Push tasks serve one platform each, with many events inside: a Prefect task run costs several
milliseconds, and thousands of them in one flow would dominate the run and strain the server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.logging import get_run_logger
from prefect.tasks import Task

from connectors.base import BusyBlock
from fieldsync import settings
from fieldsync.conflict_engine import ConflictEngine
from fieldsync.pipeline import (
    ConflictOutcome,
    ConflictPolicy,
    Enrichment,
    check_conflicts,
    items_under_policy,
    load_enrichment,
)
from fieldsync.store import reads
from fieldsync.store.db import session_scope
from fieldsync.sync import executor
from fieldsync.sync.model import PushReport, SyncItem
from tasks.connectors import connector_for


class PushIncomplete(RuntimeError):
    """Some items of a platform push failed; they are recorded as failed in the ledger."""

    def __init__(self, report: PushReport) -> None:
        first = "; ".join(report.errors[:3])
        super().__init__(
            f"{report.platform}: {report.failed} of {report.failed + report.writes} writes "
            f"failed ({report.transient_failures} transient). First errors: {first}"
        )
        self.report = report


def _retry_when_worthwhile(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry transient trouble; a permanent refusal or a blocked mass deletion stays failed."""
    try:
        state.result()
    except PushIncomplete as exc:
        return exc.report.transient_failures > 0
    except executor.MassDeletionBlocked:
        return False
    except Exception:
        return True
    return False


@task(name="fetch-appointments", cache_policy=NO_CACHE)
def fetch_appointments(appointment_ids: list[str]) -> list[str]:
    with session_scope() as session:
        reads.jobs_by_ids(session, appointment_ids)  # raises, naming any id that is missing
    return appointment_ids


@task(name="select-shift", cache_policy=NO_CACHE)
def select_shift(shift_date: Any, region: str | None, technician_id: str | None) -> list[str]:
    from fieldsync.shifts import shift_job_ids

    with session_scope() as session:
        return shift_job_ids(session, shift_date, region=region, technician_id=technician_id)


@task(name="enrich", cache_policy=NO_CACHE)
def enrich_jobs(job_ids: list[str], whole_days: bool = False) -> Enrichment:
    return load_enrichment(job_ids, whole_days=whole_days)


@task(name="detect-conflicts", cache_policy=NO_CACHE)
def detect_conflicts(
    enrichment: Enrichment, busy: Mapping[str, Sequence[BusyBlock]] | None = None
) -> ConflictOutcome:
    """Overlaps, travel, shift hours, skills, stock and external busy time (ConflictEngine)."""
    outcome = check_conflicts(enrichment, ConflictEngine(busy=busy or {}))
    get_run_logger().info("%d conflicts, %d of them new", len(outcome.findings), len(outcome.new))
    return outcome


@task(name="plan-sync", cache_policy=NO_CACHE)
def plan_sync(
    enrichment: Enrichment,
    outcome: ConflictOutcome,
    force: bool = False,
    policy: ConflictPolicy = "tentative",
) -> tuple[list[SyncItem], list[str]]:
    """Decide every write up front and stop before any if it would be a mass deletion."""
    items, held = items_under_policy(enrichment, outcome, policy)
    if held:
        get_run_logger().warning(
            "Held back by the conflict policy until resolved: %s", ", ".join(held)
        )
    planned = executor.guard(items, force=force)
    platforms = sorted(planned.platforms())
    get_run_logger().info(
        "Plan: %d create, %d update, %d delete, %d unchanged on %s",
        planned.count(executor.OpKind.CREATE),
        planned.count(executor.OpKind.UPDATE),
        planned.count(executor.OpKind.DELETE),
        planned.unchanged,
        ", ".join(platforms) or "no platform",
    )
    return items, platforms


@task(
    name="push",
    task_run_name="push-{platform}",
    retries=len(settings.push_retry_delays()),
    retry_delay_seconds=settings.push_retry_delays(),
    retry_jitter_factor=0.2,
    retry_condition_fn=_retry_when_worthwhile,
    cache_policy=NO_CACHE,
)
def push_platform(platform: str, items: Sequence[SyncItem], force: bool = False) -> PushReport:
    """Push one platform's share. Each attempt re-plans from the ledger, so a retry pushes only
    what is still missing."""
    report = executor.push_platform(platform, items, connector_for, force=force)
    get_run_logger().info(
        "%s: %d created, %d updated, %d deleted, %d unchanged, %d failed",
        platform,
        report.created,
        report.updated,
        report.deleted,
        report.unchanged,
        report.failed,
    )
    if report.failed:
        raise PushIncomplete(report)
    return report
