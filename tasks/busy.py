"""Read external busy time (personal events, other bookings) from technicians' own calendars,
for the conflict engine. Our own events come back marked with their job id and are ignored."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from connectors.base import BusyBlock
from fieldsync.busy import read_busy
from fieldsync.domain import TechnicianView
from fieldsync.pipeline import Enrichment
from fieldsync.store.reads import local_day_of
from tasks.connectors import connector_for


@task(name="read-busy-time", cache_policy=NO_CACHE)
def read_busy_time(enrichment: Enrichment) -> dict[str, list[BusyBlock]]:
    """Busy blocks of the technicians and local days a sync looks at."""
    days: dict[str, set[date]] = defaultdict(set)
    techs: dict[str, TechnicianView] = {}
    for e in enrichment.context:
        if e.technician is not None and e.job.is_open:
            techs[e.technician.id] = e.technician
            days[e.technician.id].add(local_day_of(e.job.start, e.technician))
    return busy_for([(techs[t], sorted(d)) for t, d in days.items()])


def busy_for(wanted: list[tuple[TechnicianView, list[date]]]) -> dict[str, list[BusyBlock]]:
    """Busy blocks per technician over their local days; unreadable calendars are logged."""
    logger = get_run_logger()
    return read_busy(wanted, connector_for, lambda message: logger.warning("%s", message))
