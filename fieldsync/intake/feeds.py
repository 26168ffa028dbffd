"""A technician's published ICS feed, for the intake to serve at its token URL."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.ics_feed import IcsFeedConnector
from fieldsync import settings
from fieldsync.store.tables import CalendarBinding

EMPTY_FEED = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fieldsync//feed//EN\r\n"
    "CALSCALE:GREGORIAN\r\nEND:VCALENDAR\r\n"
)


def feed_for(session: Session, technician_id: str) -> str:
    """The feed file our ICS connector keeps for the technician's ICS binding; a valid empty
    calendar before the first sync, so a subscribed phone shows nothing rather than an error."""
    calendar_id = session.scalars(
        select(CalendarBinding.calendar_id).where(
            CalendarBinding.technician_id == technician_id,
            CalendarBinding.platform == "ics",
            CalendarBinding.active,
        )
    ).first()
    if calendar_id is None:
        return EMPTY_FEED
    path = IcsFeedConnector(settings.feed_dir()).path_for(calendar_id)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return EMPTY_FEED
