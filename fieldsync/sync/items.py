"""From enriched jobs to sync items: which calendars each job belongs on right now."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from fieldsync.domain import AppointmentStatus, BindingView, EnrichedJob
from fieldsync.event_content import event_for
from fieldsync.events import CalendarEvent
from fieldsync.sync.model import SyncItem


def sync_items(
    jobs: Sequence[EnrichedJob], tentative_ids: Collection[str] = frozenset()
) -> list[SyncItem]:
    items = []
    for e in jobs:
        placements: tuple[tuple[BindingView, CalendarEvent], ...] = ()
        if e.technician is not None and e.job.status is not AppointmentStatus.CANCELED:
            event = event_for(e, tentative=e.job.id in tentative_ids)
            placements = tuple((b, event) for b in e.technician.bindings)
        items.append(SyncItem(e.job.id, e.job.version, placements))
    return items
