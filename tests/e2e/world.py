"""What the end-to-end tests share: a running stack, the Radicale calendar behind a fault
proxy, and small clients for Prefect's REST API and the intake."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from fieldsync.intake import tokens
from fieldsync.stack import Stack
from fieldsync.store.db import engine_for, migrate, session_scope
from fieldsync.store.tables import CalendarBinding, SyncLedger, Technician
from tests.caldav_servers import DavServer, FaultProxy, free_port, start_radicale

KEY = "e2e-calendly-signing-key"
BLOCK = "fieldsync-caldav-calendar/e2e"
PAYLOAD = Path(__file__).parent.parent / "intake_sources" / "payloads"


class World:
    def __init__(
        self, stack: Stack, dav: DavServer, proxy: FaultProxy, calendar: str, db: str,
        api_key: str,
    ) -> None:  # fmt: skip
        self.stack = stack
        self.dav = dav
        self.proxy = proxy
        self.calendar = calendar
        self.db = db
        self.api = httpx.Client(base_url=stack.api_url, timeout=20)
        self.intake = httpx.Client(base_url=stack.intake_url, timeout=20)
        self.auth = {"Authorization": f"Bearer {api_key}"}

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
        for name in [n for n in self.stack.procs if n.startswith("worker")]:
            if self.stack.procs[name].poll() is not None:
                self.stack.start_worker(name)

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


def _seed(db: str, calendar: str) -> str:
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
        return tokens.issue(session, "api", "e2e-portal")


@contextmanager
def running_world(
    home: Path, db: str, *, workers: int = 1, env: Mapping[str, str] | None = None
) -> Iterator[World]:
    dav = start_radicale()
    proxy = FaultProxy(dav.base_url).start()
    calendar = dav.new_calendar("e2e")
    api_key = _seed(db, calendar)
    stack = Stack(
        home, prefect_port=free_port(), intake_port=free_port(), worker_poll_seconds=1,
        env_extra={
            "DATABASE_URL": db,
            "FIELDSYNC_FEED_DIR": str(home / "feeds"),
            "FIELDSYNC_CALENDLY_SIGNING_KEY": KEY,
            "FIELDSYNC_PUSH_RETRY_DELAYS": "0,0",
            "FIELDSYNC_HTTP_BACKOFF_SCALE": "0.01",
            **(env or {}),
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
        subprocess.run([sys.executable, "-c", code], env=stack.env(), check=True, timeout=120)
        for n in range(workers):
            stack.start_worker(f"worker-{n + 1}" if n else "worker")
        stack.start_intake()
        yield World(stack, dav, proxy, calendar, db, api_key)
    finally:
        stack.stop_all()
        proxy.stop()
        dav.stop()
        engine_for(db).dispose()


def tomorrow(hour: int, minute: int = 0) -> datetime:
    day = datetime.now(UTC).date() + timedelta(days=1)
    return datetime.combine(day, dtime(hour, minute), tzinfo=UTC)
