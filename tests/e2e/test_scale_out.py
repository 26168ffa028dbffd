"""The multi-machine path: Prefect server and the fieldsync store on PostgreSQL, two process
workers taking overlapping triggers for the same appointments at once.

Every booking is followed at once by two reschedules, so three runs per job race on two
workers. Required: each event created exactly once on the calendar (no duplicate create,
which CalDAV would answer 412), and each calendar showing the last reschedule (no older run
overwriting a newer one). The store referees it: per-calendar row locks around every push,
and the appointment version recorded per ledger row.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment, SyncLedger
from tests.e2e.world import World, running_world, tomorrow
from tests.pg import drop_database, fresh_database

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

JOBS = 4


@pytest.fixture(scope="module")
def pg_world(tmp_path_factory: pytest.TempPathFactory, pg_server: str) -> Iterator[World]:
    home: Path = tmp_path_factory.mktemp("scale")
    store = fresh_database(pg_server)
    prefect_db = fresh_database(pg_server)
    server_url = prefect_db.replace("postgresql+psycopg://", "postgresql+asyncpg://")
    try:
        with running_world(
            home, store, workers=2, env={"PREFECT_SERVER_DATABASE_CONNECTION_URL": server_url}
        ) as world:
            yield world
    finally:
        drop_database(pg_server, store)
        drop_database(pg_server, prefect_db)


def _book(world: World, n: int) -> str:
    body = {
        "source": "portal", "source_id": f"scale-{n}", "technician_id": "T1",
        "job_type": "Boiler service", "start": tomorrow(7 + 2 * n).isoformat(),
        "duration_minutes": 60, "customer_name": f"Customer {n}", "address": f"{n} Main St",
    }  # fmt: skip
    response = world.intake.post("/v1/appointments", json=body, headers=world.auth)
    assert response.status_code == 201, response.text
    return str(response.json()["appointment_ids"][0])


def test_two_workers_overlapping_triggers_no_duplicates_no_lost_updates(
    pg_world: World,
) -> None:
    world = pg_world
    # Each calendar write takes a second, so runs for the same job are in flight together.
    world.proxy.delay = 1.0
    ids = [_book(world, n) for n in range(JOBS)]
    final = {}
    for n, appointment_id in enumerate(ids):
        for minutes in (15, 30):
            new_start = tomorrow(7 + 2 * n, minutes)
            response = world.intake.post(
                f"/v1/appointments/{appointment_id}/reschedule",
                json={"start": new_start.isoformat()}, headers=world.auth,
            )  # fmt: skip
            assert response.status_code == 200, response.text
            final[appointment_id] = new_start

    expected = 3 * JOBS
    deadline = time.monotonic() + 300
    finished: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        world.keep_worker()
        runs = [
            r
            for dep in ("appointment-booked/appointment-booked",
                        "appointment-modified/appointment-modified")
            for r in world.runs(dep)
            if r["parameters"].get("appointment_id") in ids
        ]  # fmt: skip
        finished = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
        if len(finished) >= expected:
            break
        time.sleep(1)
    assert len(finished) == expected, [(r["name"], r["state_type"]) for r in finished]
    assert all(r["state_type"] == "COMPLETED" for r in finished), [
        (r["name"], r["state"]) for r in finished if r["state_type"] != "COMPLETED"
    ]

    puts = world.proxy.statuses("PUT")
    assert 412 not in puts, puts  # no second create of an event that exists
    assert puts.count(201) == JOBS, puts  # each event created exactly once
    bodies = world.on_calendar()
    for appointment_id, start in final.items():
        mine = [b for b in bodies if appointment_id in b]
        assert len(mine) == 1
        assert (
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}" in mine[0]
            or start.strftime("%Y%m%dT%H%M%S") in mine[0]
        ), mine[0]
    with session_scope(world.db) as session:
        for appointment_id in ids:
            version = session.get(Appointment, appointment_id).version  # type: ignore[union-attr]
            row = session.scalars(
                select(SyncLedger).where(SyncLedger.appointment_id == appointment_id)
            ).one()
            assert (row.state, row.pushed_version) == ("synced", version)
    # Both workers took runs: the overlap really crossed processes.
    for name in ("worker", "worker-2"):
        assert "submitting flow run" in world.stack.log(name).read_text(), name
