"""Outgoing Prefect events: written with the change they announce, delivered by the relay.

Writing the event row in the store transaction (not calling Prefect from the request) is what
makes delivery safe: if the Prefect API is down, the request is still accepted and the event
waits; when the API is back, the relay sends it. The row id is the Prefect event id, so an
event sent twice (a relay crash between send and mark) is deduplicated by Prefect's triggers.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from fieldsync.store.tables import OutboxEvent, utcnow

BOOKED = "fieldsync.appointment.booked"
CHANGED = "fieldsync.appointment.changed"
CANCELED = "fieldsync.appointment.canceled"
TECHNICIAN_STATUS = "fieldsync.technician.status"
CONFLICT = "fieldsync.conflict.detected"


@dataclass(frozen=True, slots=True)
class PendingEvent:
    event: str
    resource_id: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    related: tuple[tuple[str, str], ...] = ()  # (role, resource id), e.g. the technician


def appointment_event(event: str, appointment_id: str, **payload: Any) -> PendingEvent:
    body = {"appointment_id": appointment_id, **payload}
    related: tuple[tuple[str, str], ...] = ()
    if payload.get("technician_id"):
        related = (("technician", f"fieldsync.technician.{payload['technician_id']}"),)
    return PendingEvent(event, f"fieldsync.appointment.{appointment_id}", body, related)


def write(session: Session, events: list[PendingEvent], *, now: datetime | None = None) -> None:
    if not events:
        return
    at = now or utcnow()
    session.execute(
        insert(OutboxEvent),
        [
            {
                "id": str(uuid.uuid4()),
                "event": e.event,
                "resource_id": e.resource_id,
                "payload": {**e.payload, "_related": [list(r) for r in e.related]},
                "occurred": at,
                "attempts": 0,
            }
            for e in events
        ],
    )


def to_prefect(row: OutboxEvent) -> dict[str, Any]:
    """The JSON body Prefect's events API takes for one event."""
    payload = dict(row.payload)
    related = payload.pop("_related", [])
    return {
        "id": row.id,
        "occurred": row.occurred.isoformat(),
        "event": row.event,
        "resource": {"prefect.resource.id": row.resource_id},
        "related": [
            {"prefect.resource.id": rid, "prefect.resource.role": role} for role, rid in related
        ],
        "payload": payload,
    }
