"""Two bookings racing for one technician's slot: the store flags the second, on both backends."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from fieldsync.inputs import AppointmentInput
from fieldsync.store.booking import book
from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment, Conflict
from fieldsync.store.writes import UnknownTechnicianError
from tests.factories import DAY, add_technician


def booking(source_id: str, hour: float, tech: str | None = "T1") -> AppointmentInput:
    start = DAY + timedelta(hours=hour)
    return AppointmentInput.model_validate(
        {
            "source": "portal",
            "source_id": source_id,
            "technician_id": tech,
            "job_type": "AC repair",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "customer_name": f"Customer {source_id}",
            "address": "1 Elm St, Dallas",
        }
    )


def test_a_clean_booking_and_a_double_booking(db_url: str) -> None:
    with session_scope(db_url) as s:
        add_technician(s, "T1")
    first = book(booking("A", 9))
    assert not first.flagged
    assert not book(booking("B", 10)).flagged  # back to back is fine
    assert not book(booking("D", 11.5)).flagged
    clash = book(booking("C", 8.5))
    assert clash.double_booked_with == [first.appointment_id]
    with session_scope(db_url) as s:
        [conflict] = s.scalars(select(Conflict))
        assert conflict.kind == "overlap" and clash.appointment_id in conflict.appointment_ids
        assert s.get(Appointment, clash.appointment_id) is not None  # stored, not lost
    # Re-delivering booking A: still in the same double-booking, which is not a new conflict.
    again = book(booking("A", 9))
    assert again.outcome == "unchanged" and again.double_booked_with == [clash.appointment_id]
    with session_scope(db_url) as s:
        assert len(list(s.scalars(select(Conflict)))) == 1


def test_unknown_technician_is_refused_by_name(db_url: str) -> None:
    with pytest.raises(UnknownTechnicianError, match="T404"):
        book(booking("X", 9, tech="T404"))


def test_racing_bookings_for_one_slot_never_both_pass(db_url: str) -> None:
    with session_scope(db_url) as s:
        add_technician(s, "T1")
    ready = threading.Barrier(2)
    results = []
    errors: list[BaseException] = []

    def racer(source_id: str) -> None:
        try:
            ready.wait()
            # Hold the window between "is the slot free?" and the write wide open: without the
            # store serializing bookings, both would see a free slot.
            results.append(book(booking(source_id, 9), after_check=lambda: time.sleep(0.3)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(n,)) for n in ("R1", "R2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(r.flagged for r in results) == [False, True]
    with session_scope(db_url) as s:
        assert len(list(s.scalars(select(Appointment)))) == 2
