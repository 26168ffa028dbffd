"""Read external busy time (personal events, other bookings) from technicians' own calendars,
for the conflict engine. Our own events come back marked with their job id and are ignored."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from connectors.base import BusyBlock, CalendarConnector
from connectors.errors import ConnectorError
from fieldsync.domain import TechnicianView
from fieldsync.pipeline import Enrichment
from fieldsync.store.reads import local_day, local_day_of
from tasks.connectors import connector_for

# An ICS feed is published by us and written by nobody else: it holds no outside busy time.
_PUBLISH_ONLY = frozenset({"ics"})


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
    """Busy blocks per technician over their local days. A calendar that cannot be read is
    logged and skipped: missing busy time weakens one check, it must not stop the run."""
    logger = get_run_logger()
    connectors: dict[tuple[str, str | None], CalendarConnector | None] = {}
    busy: dict[str, list[BusyBlock]] = defaultdict(list)
    try:
        for tech, tech_days in wanted:
            for binding in tech.bindings:
                if binding.platform in _PUBLISH_ONLY:
                    continue
                key = (binding.platform, binding.credentials_block)
                if key not in connectors:
                    try:
                        connectors[key] = connector_for(binding)
                    except ConnectorError as exc:
                        logger.warning("No busy time from %s: %s", binding.platform, exc)
                        connectors[key] = None
                connector = connectors[key]
                if connector is None or not connector.supports_busy:
                    continue
                for day in tech_days:
                    lo, hi = local_day(day, tech.timezone)
                    try:
                        busy[tech.id].extend(connector.busy(binding.calendar_id, lo, hi))
                    except ConnectorError as exc:
                        logger.warning(
                            "Busy time of %s on %s not read: %s", tech.id, binding.platform, exc
                        )
    finally:
        for connector in connectors.values():
            if connector is not None:
                connector.close()
    return dict(busy)
