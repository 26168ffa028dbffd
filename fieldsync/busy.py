"""Read external busy time (personal events, other bookings) from technicians' own calendars.
Shared by the flows (through a task) and the intake's options API."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date

from connectors.base import BusyBlock, CalendarConnector
from connectors.errors import ConnectorError
from fieldsync.domain import BindingView, TechnicianView
from fieldsync.store.reads import local_day

# An ICS feed is published by us and written by nobody else: it holds no outside busy time.
_PUBLISH_ONLY = frozenset({"ics"})


def read_busy(
    wanted: list[tuple[TechnicianView, list[date]]],
    connector_for: Callable[[BindingView], CalendarConnector],
    warn: Callable[[str], None],
) -> dict[str, list[BusyBlock]]:
    """Busy blocks per technician over their local days. A calendar that cannot be read is
    reported through `warn` and skipped: missing busy time weakens one check, it must not stop
    the run."""
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
                        warn(f"No busy time from {binding.platform}: {exc}")
                        connectors[key] = None
                connector = connectors[key]
                if connector is None or not connector.supports_busy:
                    continue
                for day in tech_days:
                    lo, hi = local_day(day, tech.timezone)
                    try:
                        busy[tech.id].extend(connector.busy(binding.calendar_id, lo, hi))
                    except ConnectorError as exc:
                        warn(f"Busy time of {tech.id} on {binding.platform} not read: {exc}")
    finally:
        for connector in connectors.values():
            if connector is not None:
                connector.close()
    return dict(busy)
