"""The DAG every trigger flow shares after its own first step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from prefect.futures import PrefectFuture, wait
from prefect.utilities.annotations import quote

from fieldsync import settings
from fieldsync.conflicts import ConflictFinding
from fieldsync.pipeline import ConflictOutcome, ConflictPolicy, Enrichment
from fieldsync.sync.model import PushReport
from flows.tagging import tag_run
from tasks.busy import read_busy_time
from tasks.notify import alert_conflicts, notify
from tasks.sync_tasks import (
    PushIncomplete,
    detect_conflicts,
    enrich_jobs,
    plan_sync,
    push_platform,
)


class SyncFailed(RuntimeError):
    pass


@dataclass
class SyncResult:
    label: str
    reports: list[PushReport] = field(default_factory=list)
    conflicts: list[ConflictFinding] = field(default_factory=list)
    new_conflicts: int = 0
    jobs: int = 0
    summary: str = ""

    @property
    def writes(self) -> int:
        return sum(r.writes for r in self.reports)

    def report(self, platform: str) -> PushReport:
        return next((r for r in self.reports if r.platform == platform), PushReport(platform))


@dataclass
class Checked:
    enrichment: Enrichment
    outcome: ConflictOutcome
    alerted: int  # alerts sent now


def check_and_alert(job_ids: list[str], *, whole_days: bool) -> Checked:
    """enrich → busy time → detect conflicts → alert: the step every flow shares before it
    pushes (the sweep stops after it)."""
    ids: Any = quote(job_ids)
    enrichment = enrich_jobs(ids, whole_days)
    big_enrichment: Any = quote(enrichment)
    busy: Any = quote(read_busy_time(big_enrichment))
    outcome = detect_conflicts(big_enrichment, busy)
    return Checked(enrichment, outcome, alert_conflicts(quote(outcome.new)))


def run_sync(
    job_ids: list[str],
    *,
    label: str,
    whole_days: bool = False,
    force: bool = False,
    conflict_policy: ConflictPolicy | None = None,
) -> SyncResult:
    """enrich → detect conflicts (+ alert) → plan and guard → one push per platform → notify.

    Big inputs travel wrapped in quote(): Prefect would otherwise walk every object looking
    for futures, which costs real time at 10,000 jobs.
    """
    result = SyncResult(label, jobs=len(job_ids))
    checked = check_and_alert(job_ids, whole_days=whole_days)
    enrichment, outcome = checked.enrichment, checked.outcome
    big_enrichment: Any = quote(enrichment)
    result.conflicts = outcome.findings
    result.new_conflicts = checked.alerted
    big_outcome: Any = quote(outcome)
    policy = conflict_policy or cast(ConflictPolicy, settings.conflict_policy())
    items, platforms = plan_sync(big_enrichment, big_outcome, force, policy)

    futures: list[PrefectFuture[PushReport]] = [
        push_platform.submit(platform, quote(items), force) for platform in platforms
    ]
    wait(futures)
    failures: list[str] = []
    for platform, fut in zip(platforms, futures, strict=True):
        outcome_or_error = fut.state.result(raise_on_failure=False)
        if isinstance(outcome_or_error, PushReport):
            result.reports.append(outcome_or_error)
        elif isinstance(outcome_or_error, PushIncomplete):
            result.reports.append(outcome_or_error.report)
            failures.append(str(outcome_or_error))
        else:
            failures.append(f"{platform}: {outcome_or_error}")
    tag_run(
        platforms=platforms,
        regions={e.technician.region for e in enrichment.context if e.technician is not None},
    )
    result.summary = notify(label, quote(result.reports), quote(result.conflicts), failures)
    if failures:
        # The run ends failed so ops see it; the ledger already holds every item's outcome.
        raise SyncFailed("; ".join(failures))
    return result
