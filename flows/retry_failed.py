"""By hand, for analysts: push again exactly the ledger items still failed, nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.utilities.annotations import quote

from fieldsync.pipeline import ConflictPolicy
from fieldsync.sync.failed import FailedFilter, RetryOutcome, check_filter
from flows.naming import retry_failed_run_name
from flows.targeted import push_targeted
from tasks.retry_tasks import retry_outcomes, select_failed_items

ARTIFACT_KEY = "retry-failed-pushes"


@dataclass
class RetryResult:
    found: int = 0
    pushed: int = 0
    still_failed: int = 0
    items: list[RetryOutcome] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # per platform, when its push failed
    summary: str = ""


def _rows(items: list[RetryOutcome]) -> list[dict[str, str]]:
    return [
        {
            "appointment": o.item.appointment_id,
            "technician": o.item.technician_id,
            "platform": o.item.platform,
            "calendar": o.item.calendar_id,
            "outcome": o.outcome,
            "error": o.error[:300],
        }
        for o in items
    ]


@flow(name="retry-failed-pushes", flow_run_name=retry_failed_run_name, log_prints=True)
def retry_failed_pushes(
    platform: str | None = None,
    technician_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    force: bool = False,
    conflict_policy: ConflictPolicy | None = None,
) -> RetryResult:
    """Ledger items in state failed, narrowed by platform, by the technician owning the calendar,
    and by appointment start in [start, end): pushed as a sync would push them now. Other
    pending changes of the same appointments are left to the sync flows. `force` lets through
    a retried deletion that the mass-deletion guard would stop; `conflict_policy` as in the
    sync flows (give the one the failed push ran under)."""
    flt = FailedFilter(platform, technician_id, start, end)
    check_filter(flt)  # before any task: a typo fails at once, with the reason
    failed = select_failed_items(flt)
    if not failed:
        summary = "nothing is in state failed for these filters; nothing pushed"
        create_table_artifact(
            key=ARTIFACT_KEY,
            table=[{"appointment": "", "technician": "", "platform": "", "calendar": "",
                    "outcome": "nothing failed", "error": ""}],
            description=f"Retry of failed pushes: {summary}.",
        )  # fmt: skip
        print(summary)
        return RetryResult(summary=summary)

    targets: Any = [(i.appointment_id, i.binding_id, i.platform) for i in failed]
    pushed = push_targeted(targets, force=force, conflict_policy=conflict_policy)
    big: Any = quote(failed)
    items = retry_outcomes(big, pushed.held, pushed.broken)
    ok = sum(1 for o in items if o.ok)
    summary = f"{len(items)} failed items found: {ok} pushed, {len(items) - ok} still failed"
    create_table_artifact(
        key=ARTIFACT_KEY, table=_rows(items), description=f"Retry of failed pushes: {summary}."
    )
    print(summary)
    return RetryResult(len(items), ok, len(items) - ok, items, pushed.failures, summary)
