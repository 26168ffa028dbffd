"""The plain-function steps behind every flow: load and enrich, then check for conflicts.

Tasks wrap these one-to-one; tests call them directly without a Prefect server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from fieldsync.conflict_engine import ConflictEngine
from fieldsync.conflicts import ConflictDetector, ConflictFinding
from fieldsync.domain import EnrichedJob, JobView
from fieldsync.enrich import enrich
from fieldsync.store import reads
from fieldsync.store.conflict_store import record_findings
from fieldsync.store.db import session_scope
from fieldsync.sync.items import sync_items
from fieldsync.sync.model import SyncItem
from fieldsync.travel import GreatCircleTravel, TravelModel


@dataclass
class Enrichment:
    targets: list[EnrichedJob]  # the jobs the trigger named
    # The affected technicians' whole days: checked for conflicts and synced, so a knock-on
    # change (a neighbour turning tentative, or confirmed again) reaches the calendars too.
    context: list[EnrichedJob]


@dataclass
class ConflictOutcome:
    findings: list[ConflictFinding] = field(default_factory=list)
    new: list[ConflictFinding] = field(default_factory=list)  # first seen now: these alert

    @property
    def critical_ids(self) -> frozenset[str]:
        return frozenset(
            appt for f in self.findings if f.severity == "critical" for appt in f.appointment_ids
        )


ConflictPolicy = Literal["tentative", "hold", "push"]


def items_under_policy(
    enrichment: Enrichment, outcome: ConflictOutcome, policy: ConflictPolicy
) -> tuple[list[SyncItem], list[str]]:
    """What to push given the deployment's conflict policy, and which jobs were held back.

    tentative (default): jobs in a critical conflict go out marked tentative;
    hold: they are not pushed at all until a dispatcher resolves the conflict;
    push: they go out as if nothing were wrong (the alert still fires).
    """
    critical = outcome.critical_ids
    if policy == "hold":
        held = sorted(e.job.id for e in enrichment.context if e.job.id in critical)
        kept = [e for e in enrichment.context if e.job.id not in critical]
        return sync_items(kept), held
    return sync_items(enrichment.context, critical if policy == "tentative" else ()), []


def load_enrichment(
    job_ids: Sequence[str],
    *,
    whole_days: bool = False,
    travel: TravelModel | None = None,
    db_url: str | None = None,
) -> Enrichment:
    """`whole_days`: the ids already cover the technicians' full days (shift start), so no
    extra context is read."""
    travel = travel or GreatCircleTravel()
    with session_scope(db_url) as session:
        jobs = reads.jobs_by_ids(session, job_ids)
        tech_ids = {j.technician_id for j in jobs if j.technician_id}
        # Technicians whose calendars still show a target: after a reassignment, the old day.
        previous = {} if whole_days else reads.ledger_technicians(session, job_ids)
        technicians = reads.technicians_by_ids(session, tech_ids | set(previous.values()))
        context_jobs: dict[str, JobView] = {j.id: j for j in jobs}
        if not whole_days:
            days = {
                (j.technician_id, reads.local_day_of(j.start, technicians[j.technician_id]))
                for j in jobs
                if j.technician_id in technicians
            }
            days |= {
                (tech_id, reads.local_day_of(j.start, technicians[tech_id]))
                for j in jobs
                if (tech_id := previous.get(j.id)) in technicians and tech_id != j.technician_id
            }
            for tech_id, day in sorted(days):
                for j in reads.technician_day_jobs(session, technicians[tech_id], day):
                    context_jobs.setdefault(j.id, j)
        enriched = enrich(
            list(context_jobs.values()),
            technicians,
            reads.job_types(session),
            reads.material_catalog(session),
            travel,
        )
    by_id = {e.job.id: e for e in enriched}
    return Enrichment([by_id[i] for i in job_ids], enriched)


def check_conflicts(
    enrichment: Enrichment,
    detector: ConflictDetector | None = None,
    *,
    db_url: str | None = None,
) -> ConflictOutcome:
    detector = detector or ConflictEngine()
    findings = detector.detect(enrichment.context)
    with session_scope(db_url) as session:
        new = record_findings(session, findings, (e.job.id for e in enrichment.context))
    return ConflictOutcome(findings, new)
