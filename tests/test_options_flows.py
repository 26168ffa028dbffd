"""A dispatcher's walk-through: an emergency comes in, options come back, one is applied."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from connectors.memory import MemoryBackend
from fieldsync.cli import main
from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment
from flows.options import apply_rescheduling_option, rescheduling_options
from tests.factories import DAY, add_appointment, add_job_type, add_technician

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def emergency(sqlite_url: str) -> str:
    with session_scope(sqlite_url) as s:
        add_job_type(s)  # AC repair needs the hvac skill
        add_technician(s, "T1")
        add_technician(s, "T2")
        add_technician(s, "T3", skills=("plumbing",))  # not qualified
        for hour in (7, 9, 11, 13, 15):
            add_appointment(s, "T1", hour=hour, minutes=100)  # a full day
        add_appointment(s, "T2", hour=7, minutes=60)
        job = add_appointment(s, None, hour=8, minutes=60).id
        s.execute(update(Appointment).where(Appointment.id == job).values(priority="emergency"))
    return job


def test_options_respect_skills_and_apply_in_one_call(
    emergency: str, memory_calendars: MemoryBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    morning = DAY + timedelta(hours=7, minutes=30)  # the call comes in at 07:30
    rows = rescheduling_options(emergency, as_of=morning)
    # T1's day is full of long jobs; T2 is free after 08:00; T3 lacks the skill.
    assert rows and rows[0]["technician"] == "T2", rows
    assert all(r["technician"] != "T3" for r in rows)

    assert main(["options", emergency, "--as-of", morning.isoformat()]) == 0
    assert "1. T2 at" in capsys.readouterr().out

    result = apply_rescheduling_option(emergency, rank=1, as_of=morning)
    assert result.report("memory").created >= 1
    [event] = [e for e in memory_calendars.live_events("T2-memory") if e.job_id == emergency]
    assert event.event is not None and event.event.summary.startswith("EMERGENCY:")
