"""Nightly: find our events that were deleted or edited by hand on a platform, and put them back.

Reads back each event the ledger believes is in place (connectors that cannot read are
skipped and named in the report), marks drift in the ledger, and pushes just those events
through the normal planner. Events without our stamp are never touched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.utilities.annotations import quote

from fieldsync.parameters import check_aware, check_days_ahead, check_platform
from fieldsync.pipeline import ConflictPolicy
from fieldsync.sync.drift import Check, Drift, Repair
from flows.naming import artifact_key, drift_repair_run_name
from flows.targeted import TargetedPush, push_targeted
from tasks.drift_tasks import check_drift, judge_repairs, mark_drift

_DRIFTED = (Drift.DELETED, Drift.EDITED)


@dataclass
class DriftResult:
    dry_run: bool = False
    checked: int = 0  # events read back
    in_step: int = 0
    deleted: int = 0
    edited: int = 0
    not_ours: int = 0
    unchecked: int = 0  # on a platform that cannot read events back, or the read failed
    repaired: int = 0
    repair_failed: int = 0
    skipped_platforms: list[str] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    summary: str = ""


def _tally(repairs: Sequence[Repair], *, dry_run: bool) -> DriftResult:
    result = DriftResult(dry_run=dry_run, repairs=list(repairs))
    readable: dict[str, bool] = {}
    for r in repairs:
        drift, platform = r.check.drift, r.check.watched.binding.platform
        if drift is None:
            result.unchecked += 1
            readable.setdefault(platform, False)
            continue
        readable[platform] = True
        result.checked += 1
        result.in_step += drift is Drift.NONE
        result.deleted += drift is Drift.DELETED
        result.edited += drift is Drift.EDITED
        result.not_ours += drift is Drift.NOT_OURS
        if drift in _DRIFTED and not dry_run:
            result.repaired += r.ok
            result.repair_failed += not r.ok
    result.skipped_platforms = sorted(p for p, ok in readable.items() if not ok)
    return result


def _rows(repairs: Sequence[Repair]) -> list[dict[str, str]]:
    """Drift and foreign events one row each; events not checked one row per platform and
    reason. Events in step are only counted: a nightly table of thousands helps nobody."""
    rows: list[dict[str, str]] = []
    unchecked: dict[tuple[str, str], list[Check]] = defaultdict(list)
    for r in repairs:
        c, w = r.check, r.check.watched
        if c.drift is None:
            unchecked[(w.binding.platform, r.action)].append(c)
        elif c.drift is not Drift.NONE:
            rows.append(
                {"appointment": w.appointment_id, "platform": w.binding.platform,
                 "calendar": w.binding.calendar_id, "drift found": str(c.drift),
                 "action": r.action}
            )  # fmt: skip
    for (platform, action), checks in sorted(unchecked.items()):
        calendars = sorted({c.watched.binding.calendar_id for c in checks})
        rows.append(
            {"appointment": f"({len(checks)} events)", "platform": platform,
             "calendar": ", ".join(calendars)[:300], "drift found": "not checked",
             "action": action}
        )  # fmt: skip
    return rows or [
        {"appointment": "", "platform": "", "calendar": "", "drift found": "none",
         "action": "none"}
    ]  # fmt: skip


@flow(name="drift-repair", flow_run_name=drift_repair_run_name, log_prints=True)
def drift_repair(
    platform: str | None = None,
    days_ahead: int = 14,
    dry_run: bool = False,
    as_of: datetime | None = None,
    conflict_policy: ConflictPolicy | None = None,
) -> DriftResult:
    """Events of appointments starting in [now, now + days_ahead days): a hand-deleted one is
    re-created, a hand-edited one gets our content back. `dry_run` reports and changes
    nothing. `as_of` checks from another moment than now; `conflict_policy` as in the sync
    flows, so a repaired event looks exactly as the sync would render it."""
    check_platform(platform)
    check_days_ahead(days_ahead)
    check_aware("as_of", as_of)
    now = as_of or datetime.now(UTC)
    checks = check_drift(platform, days_ahead, now)
    big_checks: Any = quote(checks)
    pushed = TargetedPush()
    marked_ids: set[int] = set()
    if not dry_run:
        marked = mark_drift(big_checks)
        marked_ids = {c.watched.row_id for c in marked}
        targets: Any = [
            (c.watched.appointment_id, c.watched.binding.id, c.watched.binding.platform)
            for c in marked
        ]
        pushed = push_targeted(targets, conflict_policy=conflict_policy)
    repairs = judge_repairs(
        big_checks, dry_run=dry_run, marked=marked_ids, held=pushed.held,
        push_errors=pushed.broken,
    )  # fmt: skip
    result = _tally(repairs, dry_run=dry_run)
    result.summary = (
        f"drift repair{' (dry run)' if dry_run else ''} of {platform or 'all platforms'}, "
        f"{days_ahead} days from {now.isoformat(timespec='minutes')}: "
        f"{result.checked} events read back, {result.deleted} deleted and {result.edited} "
        f"edited by hand, {result.not_ours} not ours, {result.repaired} repaired, "
        f"{result.repair_failed} repairs failed, {result.unchecked} not checked"
        + (f" (cannot read back: {', '.join(result.skipped_platforms)})"
           if result.skipped_platforms else "")
    )  # fmt: skip
    create_table_artifact(
        key=artifact_key(f"drift-repair-{platform or 'all'}"),
        table=_rows(repairs),
        description=result.summary,
    )
    print(result.summary)
    return result
