"""End to end on a real Prefect server (SQLite), a process worker, the intake and Radicale.

One stack for the module (starting it costs most of the time): `prefect server start`,
`prefect deploy --all` from prefect.yaml into a process pool, a worker, `fieldsync intake
serve`. Webhooks go in over HTTP; events must come out on a real CalDAV server.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time as dtime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from fieldsync.stack import Stack
from fieldsync.store.db import engine_for, migrate, session_scope
from fieldsync.store.tables import CalendarBinding, OutboxEvent, SyncLedger, Technician
from tests.caldav_servers import DavServer, FaultProxy, free_port, start_radicale

pytestmark = pytest.mark.e2e

KEY = "e2e-calendly-signing-key"
BLOCK = "fieldsync-caldav-calendar/e2e"
PAYLOAD = Path(__file__).parent.parent / "intake_sources" / "payloads"


class World:
    def __init__(self, stack: Stack, dav: DavServer, proxy: FaultProxy, calendar: str, db: str):
        self.stack = stack
        self.dav = dav
        self.proxy = proxy
        self.calendar = calendar
        self.db = db
        self.api = httpx.Client(base_url=stack.api_url, timeout=20)
        self.intake = httpx.Client(base_url=stack.intake_url, timeout=20)

    # --- Prefect REST ---

    def runs(self, deployment: str) -> list[dict[str, Any]]:
        dep = self.api.get(f"deployments/name/{deployment}").json()
        body = {"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}, "sort": "START_TIME_ASC"}
        response = self.api.post("flow_runs/filter", json=body)
        response.raise_for_status()
        return list(response.json())

    def wait_run(
        self, deployment: str, appointment_id: str | None, final: str, timeout: float = 180
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self.keep_worker()
            seen = [
                r for r in self.runs(deployment)
                if appointment_id is None or r["parameters"].get("appointment_id") == appointment_id
            ]  # fmt: skip
            done = [r for r in seen if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
            if done:
                run = done[-1]
                assert run["state_type"] == final, (run["name"], run["state"])
                return run
            time.sleep(1)
        raise AssertionError(
            f"no finished {deployment} run for {appointment_id} in {timeout:.0f} s: "
            f"{[(r['name'], r['state_type']) for r in seen]}; worker log:\n"
            + self.stack.log("worker").read_text()[-3000:]
        )

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        dep = self.api.get(f"deployments/name/{name}").json()
        response = self.api.post(f"deployments/{dep['id']}/create_flow_run",
                                 json={"parameters": parameters})  # fmt: skip
        response.raise_for_status()
        return str(response.json()["id"])

    def wait_run_id(self, run_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.keep_worker()
            run = self.api.get(f"flow_runs/{run_id}").json()
            if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED"):
                return dict(run)
            time.sleep(1)
        raise AssertionError(f"flow run {run_id} did not finish in {timeout:.0f} s")

    def keep_worker(self) -> None:
        proc = self.stack.procs.get("worker")
        if proc is None or proc.poll() is not None:
            self.stack.start_worker()

    # --- intake ---

    def calendly(self, invitee: str, start: datetime) -> httpx.Response:
        data = json.loads((PAYLOAD / "calendly_invitee_created.json").read_text())
        data = copy.deepcopy(data)
        data["payload"]["uri"] = f"https://api.calendly.com/scheduled_events/E/invitees/{invitee}"
        data["created_at"] = datetime.now(UTC).isoformat()
        event = data["payload"]["scheduled_event"]
        event["start_time"] = start.isoformat()
        event["end_time"] = (start + timedelta(hours=1)).isoformat()
        event["event_memberships"][0]["user_email"] = "tech1@example.com"
        body = json.dumps(data).encode()
        t = str(int(time.time()))
        v1 = hmac.new(KEY.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return self.intake.post(
            "/webhooks/calendly", content=body,
            headers={"Content-Type": "application/json",
                     "Calendly-Webhook-Signature": f"t={t},v1={v1}"},
        )  # fmt: skip

    def on_calendar(self) -> list[str]:
        with self.dav.client() as client:
            bodies = []
            for resource in self.dav.list_resources(self.calendar):
                bodies.append(client.get(self.dav.calendar_url(self.calendar) + resource).text)
            return bodies

    def ledger(self, appointment_id: str) -> SyncLedger:
        with session_scope(self.db) as session:
            row = session.scalars(
                select(SyncLedger).where(SyncLedger.appointment_id == appointment_id)
            ).one()
            session.expunge(row)
            return row


def _seed(db: str, calendar: str) -> None:
    migrate(db)
    with session_scope(db) as session:
        tech = Technician(
            id="T1", name="Tess One", email="tech1@example.com", timezone="UTC",
            shift_start=dtime(0, 0), shift_end=dtime(23, 59), work_days=list(range(7)),
            skills=[], region="e2e",
        )  # fmt: skip
        session.add(tech)
        session.flush()
        session.add(CalendarBinding(technician_id="T1", platform="caldav",
                                    calendar_id=calendar, credentials_block=BLOCK))  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("stack")
    dav = start_radicale()
    proxy = FaultProxy(dav.base_url).start()
    calendar = dav.new_calendar("e2e")
    db = f"sqlite:///{home / 'store.db'}"
    _seed(db, calendar)
    stack = Stack(
        home, prefect_port=free_port(), intake_port=free_port(), worker_poll_seconds=1,
        env_extra={
            "DATABASE_URL": db,
            "FIELDSYNC_FEED_DIR": str(home / "feeds"),
            "FIELDSYNC_CALENDLY_SIGNING_KEY": KEY,
            "FIELDSYNC_PUSH_RETRY_DELAYS": "0,0",
            "FIELDSYNC_HTTP_BACKOFF_SCALE": "0.01",
        },
    )  # fmt: skip
    try:
        stack.start_prefect()
        stack.deploy()
        code = (
            "from blocks.caldav import CalDavCredentials;"
            f"CalDavCredentials(server_url={proxy.url + dav.home!r}, username={dav.username!r},"
            f" password={dav.password!r}).save('e2e', overwrite=True)"
        )
        import subprocess
        import sys

        subprocess.run([sys.executable, "-c", code], env=stack.env(), check=True, timeout=120)
        stack.start_worker()
        stack.start_intake()
        yield World(stack, dav, proxy, calendar, db)
    finally:
        stack.stop_all()
        proxy.stop()
        dav.stop()
        engine_for(db).dispose()


def _tomorrow(hour: int) -> datetime:
    day = datetime.now(UTC).date() + timedelta(days=1)
    return datetime.combine(day, dtime(hour), tzinfo=UTC)


def test_signed_calendly_booking_reaches_the_technicians_calendar(world: World) -> None:
    response = world.calendly(f"INV-{uuid.uuid4().hex[:8]}", _tomorrow(9))
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
        response = world.calendly(f"INV-{uuid.uuid4().hex[:8]}", _tomorrow(13))
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
    new_puts = world.proxy.statuses("PUT")[len(puts_before):]
    assert new_puts == [201], new_puts  # only that one item was pushed
    assert world.ledger(appointment_id).state == "synced"
    assert len(world.on_calendar()) == before + 1


def test_webhooks_posted_while_prefect_is_down_are_delivered_when_it_is_back(
    world: World,
) -> None:
    world.stack.stop("prefect-server")
    ids = []
    for hour in (15, 16):
        response = world.calendly(f"INV-{uuid.uuid4().hex[:8]}", _tomorrow(hour))
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
