"""End to end on a real Prefect server (SQLite), a process worker, the intake and Radicale.

One stack for the module (starting it costs most of the time): `prefect server start`,
`prefect deploy --all` from prefect.yaml into a process pool, a worker, `fieldsync intake
serve`. Webhooks go in over HTTP; events must come out on a real CalDAV server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from fieldsync.store.db import session_scope
from fieldsync.store.tables import OutboxEvent
from tests.e2e.world import World, running_world, tomorrow

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("stack")
    db = f"sqlite:///{home / 'store.db'}"
    with running_world(home, db) as running:
        yield running


def test_signed_calendly_booking_reaches_the_technicians_calendar(world: World) -> None:
    response = world.calendly(f"INV-{uuid.uuid4().hex[:8]}", tomorrow(9))
    assert response.status_code == 201, response.text
    [appointment_id] = response.json()["appointment_ids"]

    run = world.wait_run("appointment-booked/appointment-booked", appointment_id, "COMPLETED")
    assert appointment_id.lower() in run["name"].lower() or "booked" in run["name"]
    assert any(t.startswith("platform:caldav") for t in run["tags"]), run["tags"]
    assert any(t == "region:e2e" for t in run["tags"]), run["tags"]
    assert any(appointment_id in body for body in world.on_calendar())
    assert world.ledger(appointment_id).state == "synced"


def test_failed_push_fails_the_run_and_the_analyst_retry_pushes_only_that_item(
    world: World,
) -> None:
    before = len(world.on_calendar())
    world.proxy.refuse = ("PUT", b"", 500)
    try:
        response = world.calendly(f"INV-{uuid.uuid4().hex[:8]}", tomorrow(13))
        assert response.status_code == 201, response.text
        [appointment_id] = response.json()["appointment_ids"]
        world.wait_run("appointment-booked/appointment-booked", appointment_id, "FAILED")
        row = world.ledger(appointment_id)
        assert row.state == "failed" and row.last_error
        assert len(world.on_calendar()) == before
    finally:
        world.proxy.refuse = None
    # A failed run alerts ops through the automation.
    world.wait_run("notify-ops/notify-ops", None, "COMPLETED", timeout=120)

    puts_before = world.proxy.statuses("PUT")
    run_id = world.run_deployment("retry-failed-pushes/retry-failed-pushes",
                                  {"platform": "caldav"})  # fmt: skip
    run = world.wait_run_id(run_id)
    assert run["state_type"] == "COMPLETED", run["state"]
    new_puts = world.proxy.statuses("PUT")[len(puts_before) :]
    assert new_puts == [201], new_puts  # only that one item was pushed
    assert world.ledger(appointment_id).state == "synced"
    assert len(world.on_calendar()) == before + 1


def test_webhooks_posted_while_prefect_is_down_are_delivered_when_it_is_back(
    world: World,
) -> None:
    world.stack.stop("prefect-server")
    ids = []
    for hour in (15, 16):
        response = world.calendly(f"INV-{uuid.uuid4().hex[:8]}", tomorrow(hour))
        assert response.status_code == 201, response.text
        ids.extend(response.json()["appointment_ids"])
    with session_scope(world.db) as session:
        waiting = session.scalars(
            select(OutboxEvent.payload).where(OutboxEvent.delivered_at.is_(None))
        ).all()
    assert {p["appointment_id"] for p in waiting} >= set(ids)

    world.stack.start_prefect()
    for appointment_id in ids:
        world.wait_run("appointment-booked/appointment-booked", appointment_id, "COMPLETED")
    bodies = world.on_calendar()
    for appointment_id in ids:
        assert sum(appointment_id in body for body in bodies) == 1


def test_a_double_booking_at_intake_alerts_ops_through_the_automation(world: World) -> None:
    def book(n: int) -> str:
        body = {
            "source": "portal", "source_id": f"clash-{uuid.uuid4().hex[:6]}-{n}",
            "technician_id": "T1", "job_type": "Boiler service",
            "start": tomorrow(19).isoformat(), "duration_minutes": 60,
            "customer_name": f"Clash {n}", "address": f"{n} Clash St",
        }  # fmt: skip
        response = world.intake.post("/v1/appointments", json=body, headers=world.auth)
        assert response.status_code == 201, response.text
        return str(response.json()["appointment_ids"][0])

    before = {r["id"] for r in world.runs("notify-ops/notify-ops")}
    first, second = book(1), book(2)
    deadline = time.monotonic() + 120
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not alerts:
        world.keep_worker()
        alerts = [
            r for r in world.runs("notify-ops/notify-ops")
            if r["id"] not in before and "Conflict" in r["parameters"].get("title", "")
            and r["state_type"] == "COMPLETED"
        ]  # fmt: skip
        time.sleep(1)
    assert alerts, "no conflict alert run from the automation"
    detail = alerts[0]["parameters"]["detail"]
    assert alerts[0]["parameters"]["severity"] == "critical"
    assert first in detail and second in detail
