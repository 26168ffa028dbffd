"""Tasks that push named (appointment, binding) pairs only: the retry and drift-repair flows."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from fieldsync import settings
from fieldsync.pipeline import ConflictOutcome, ConflictPolicy, Enrichment, items_under_policy
from fieldsync.sync.model import PushReport, SyncItem
from fieldsync.sync.restricted import Pair, items_for, push_pairs
from tasks.connectors import connector_for
from tasks.sync_tasks import PushIncomplete, _retry_when_worthwhile


@task(name="plan-targeted", cache_policy=NO_CACHE)
def plan_targeted(
    enrichment: Enrichment,
    outcome: ConflictOutcome,
    policy: ConflictPolicy,
    pairs: Collection[Pair],
) -> tuple[list[SyncItem], list[str]]:
    """The pairs' appointments as a sync would render them now (conflict policy included, so a
    job in a double-booking goes out tentative, or not at all under "hold"), and which of them
    the policy holds back."""
    items, held = items_under_policy(enrichment, outcome, policy)
    mine = items_for(items, pairs)
    ids = {appointment_id for appointment_id, _ in pairs}
    held_here = [h for h in held if h in ids]
    if held_here:
        get_run_logger().warning(
            "Held back by the conflict policy until resolved: %s", ", ".join(held_here)
        )
    return mine, held_here


@task(
    name="push-only",
    task_run_name="push-only-{platform}",
    retries=len(settings.push_retry_delays()),
    retry_delay_seconds=settings.push_retry_delays(),
    retry_jitter_factor=0.2,
    retry_condition_fn=_retry_when_worthwhile,
    cache_policy=NO_CACHE,
)
def push_only(
    platform: str, items: Sequence[SyncItem], pairs: Collection[Pair], force: bool = False
) -> PushReport:
    """Push one platform's share of the named pairs; other pending writes of the same
    appointments are left to the sync flows. Retries re-plan, so they push only what is
    still missing."""
    report = push_pairs(platform, items, pairs, connector_for, force=force)
    get_run_logger().info(
        "%s: %d created, %d updated, %d deleted, %d failed",
        platform, report.created, report.updated, report.deleted, report.failed,
    )  # fmt: skip
    if report.failed:
        raise PushIncomplete(report)
    return report
