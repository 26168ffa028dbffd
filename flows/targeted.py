"""The DAG of a push limited to named (appointment, binding) pairs: retry and drift repair.

Same engine path as every sync flow (enrich → busy time → conflicts → alert → conflict policy),
so the events come out exactly as a sync would render them; only the push is narrower.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from prefect.futures import PrefectFuture, wait
from prefect.utilities.annotations import quote

from fieldsync import settings
from fieldsync.conflicts import ConflictFinding
from fieldsync.pipeline import ConflictPolicy
from fieldsync.sync.model import PushReport
from fieldsync.sync.restricted import Pair
from flows.common import check_and_alert
from tasks.sync_tasks import PushIncomplete
from tasks.targeted import plan_targeted, push_only


@dataclass
class TargetedPush:
    reports: list[PushReport] = field(default_factory=list)
    # Per platform whose push task ended failed, why. Failed items are recorded in the ledger;
    # `broken` holds the platforms that failed as a whole (no connector, blocked deletion).
    failures: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    conflicts: list[ConflictFinding] = field(default_factory=list)
    new_conflicts: int = 0


def push_targeted(
    targets: Sequence[tuple[str, int, str]],
    *,
    force: bool = False,
    conflict_policy: ConflictPolicy | None = None,
) -> TargetedPush:
    """`targets`: (appointment id, binding id, platform) of each pair to push."""
    result = TargetedPush()
    if not targets:
        return result
    by_platform: dict[str, list[Pair]] = defaultdict(list)
    for appointment_id, binding_id, platform in targets:
        by_platform[platform].append((appointment_id, binding_id))
    checked = check_and_alert(sorted({t[0] for t in targets}), whole_days=False)
    outcome = checked.outcome
    big_enrichment: Any = quote(checked.enrichment)
    result.conflicts = outcome.findings
    result.new_conflicts = checked.alerted
    policy = conflict_policy or cast(ConflictPolicy, settings.conflict_policy())
    all_pairs: Any = quote([p for pairs in by_platform.values() for p in pairs])
    big_outcome: Any = quote(outcome)
    items, result.held = plan_targeted(big_enrichment, big_outcome, policy, all_pairs)
    platforms = sorted(by_platform)
    futures: list[PrefectFuture[PushReport]] = [
        push_only.submit(platform, quote(items), quote(by_platform[platform]), force)
        for platform in platforms
    ]
    wait(futures)
    for platform, fut in zip(platforms, futures, strict=True):
        report_or_error = fut.state.result(raise_on_failure=False)
        if isinstance(report_or_error, PushReport):
            result.reports.append(report_or_error)
        elif isinstance(report_or_error, PushIncomplete):
            result.reports.append(report_or_error.report)
            result.failures[platform] = str(report_or_error)
        else:
            result.failures[platform] = result.broken[platform] = str(report_or_error)
    return result
