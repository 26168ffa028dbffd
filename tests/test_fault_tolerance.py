"""A 2,000-event shift start into real and fake calendar servers while 20% of requests fail
transiently, and again after the worker is SIGKILLed mid-sync: every event ends up on its
calendar exactly once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import pytest
from prefect.settings import PREFECT_API_URL
from pydantic import SecretStr

from benchmarks.dataset import DAY, build
from blocks.caldav import CalDavCredentials
from blocks.google import GoogleWorkspaceCredentials
from blocks.microsoft import MicrosoftGraphCredentials
from connectors.google_calendar import STAMP_KEY as GOOGLE_STAMP
from connectors.graph import JOB_PROPERTY
from flows.shift_start import shift_start_sync
from tests.caldav_servers import PASS, DavServer, FaultProxy, start_radicale
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.fakes.graph import FakeGraph, tls_material

pytestmark = pytest.mark.usefixtures("prefect_harness")

TECHNICIANS, JOBS_EACH = 100, 20  # 2,000 events
FAULT_RATE = 0.2
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Target:
    """A calendar platform under test, seen from outside our connector."""

    platform: str
    block: str  # "slug/name" of the saved credentials block
    calendar_for: Callable[[str, str], str]
    events_by_job: Callable[[], Counter[str]]  # the server's own truth: job id -> events
    set_fault_rate: Callable[[float], None]
    faults_injected: Callable[[], int]


def calendar_name(tech: str, platform: str) -> str:
    return f"{tech.lower()}-jobs"


def _caldav_events(server: DavServer, calendars: list[str]) -> Counter[str]:
    body = (
        '<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" '
        'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><C:calendar-data/></D:prop>'
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"/>'
        "</C:comp-filter></C:filter></C:calendar-query>"
    )
    found: Counter[str] = Counter()
    with server.client() as client:
        for cal in calendars:
            response = client.request(
                "REPORT", server.calendar_url(cal), content=body,
                headers={"Depth": "1", "Content-Type": "application/xml"},
            )  # fmt: skip
            response.raise_for_status()
            unfolded = re.sub(r"\r?\n[ \t]", "", response.text)
            found.update(re.findall(r"X-FIELDSYNC-JOB-ID:([^\r\n<]+)", unfolded))
    return found


@pytest.fixture
def radicale() -> Iterator[Target]:
    server = start_radicale()
    proxy = FaultProxy(server.base_url, fault_rate=0.0).start()
    calendars = [calendar_name(f"T{t:05d}", "caldav") for t in range(TECHNICIANS)]
    for cal in calendars:
        server.new_calendar(cal)
    CalDavCredentials(
        server_url=proxy.url, username=server.username, password=server.password
    ).save("fault-radicale", overwrite=True)

    def set_rate(rate: float) -> None:
        proxy.fault_rate = rate

    try:
        yield Target(
            "caldav", "fieldsync-caldav-calendar/fault-radicale", calendar_name,
            lambda: _caldav_events(server, calendars), set_rate,
            lambda: sum(n for action, n in proxy.counts().items() if action != PASS),
        )  # fmt: skip
    finally:
        proxy.stop()
        server.stop()


def mailbox(tech: str, platform: str) -> str:
    return f"{tech.lower()}@acme-hvac.example"


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    fake = FakeGraph().start()
    # The fake speaks TLS with its own certificate; trust it (in this process and the worker).
    bundle = tmp_path / "ca.pem"
    bundle.write_text(Path(certifi.where()).read_text() + tls_material().cert_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    boxes = [mailbox(f"T{t:05d}", "outlook") for t in range(TECHNICIANS)]
    for box in boxes:
        fake.add_mailbox(box)
    MicrosoftGraphCredentials(
        tenant_id=fake.tenant_id,
        client_id=fake.client_id,
        client_secret=SecretStr(fake.client_secret),
        authority_host=fake.base_url,
        api_base_url=fake.api_base_url,
    ).save("fault-graph", overwrite=True)

    def events() -> Counter[str]:
        return Counter(
            value
            for box in boxes
            for event in fake.events(box)
            for prop, value in event.props.items()
            if prop.lower() == JOB_PROPERTY.lower()
        )

    def set_rate(rate: float) -> None:
        fake.fault_rate = rate

    def injected() -> int:
        return fake.random_faults

    try:
        yield Target(
            "outlook", "fieldsync-microsoft-graph/fault-graph", mailbox, events, set_rate, injected
        )
    finally:
        fake.stop()


@pytest.fixture
def google() -> Iterator[Target]:
    """Google Workspace: one service account reaching every technician's calendar by
    domain-wide delegation."""
    fake = FakeGoogleCalendar().start()
    key = fake.add_service_account()
    GoogleWorkspaceCredentials(
        service_account_info=SecretStr(json.dumps(key.info)), api_base_url=fake.base_url
    ).save("fault-google", overwrite=True)
    calendars = [mailbox(f"T{t:05d}", "google_workspace") for t in range(TECHNICIANS)]

    def events() -> Counter[str]:
        return Counter(
            event.private[GOOGLE_STAMP]
            for cal in calendars
            for event in fake.events(cal)
            if GOOGLE_STAMP in event.private
        )

    def set_rate(rate: float) -> None:
        fake.fault_rate = rate

    def injected() -> int:
        return fake.random_faults

    try:
        yield Target(
            "google_workspace", "fieldsync-google-workspace/fault-google", mailbox, events,
            set_rate, injected,
        )  # fmt: skip
    finally:
        fake.stop()


TARGETS = ["radicale", "graph", "google"]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    found: Target = request.getfixturevalue(request.param)
    return found


def _load(target: Target, db_url: str) -> set[str]:
    build(db_url, TECHNICIANS, JOBS_EACH, (target.platform,),
          calendar_for=target.calendar_for, blocks={target.platform: target.block})  # fmt: skip
    return {f"J{t:05d}{j:03d}" for t in range(TECHNICIANS) for j in range(JOBS_EACH)}


def test_transient_failures_lose_nothing_and_duplicate_nothing(
    target: Target, sqlite_url: str
) -> None:
    jobs = _load(target, sqlite_url)
    target.set_fault_rate(FAULT_RATE)
    result = shift_start_sync(DAY.date())
    assert result.report(target.platform).failed == 0
    assert target.faults_injected() > 100  # the drill really happened
    counts = target.events_by_job()
    assert set(counts) == jobs, f"missing: {sorted(jobs - set(counts))[:5]}"
    assert [job for job, n in counts.items() if n > 1] == []
    target.set_fault_rate(0.0)
    assert shift_start_sync(DAY.date()).writes == 0


def test_sigkill_mid_sync_then_rerun_lands_everything_once(target: Target, sqlite_url: str) -> None:
    jobs = _load(target, sqlite_url)
    target.set_fault_rate(FAULT_RATE / 2)
    env = {
        **os.environ,
        "DATABASE_URL": sqlite_url,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.sync_worker", DAY.date().isoformat()],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            landed = len(target.events_by_job())
            if landed >= len(jobs) // 5 or worker.poll() is not None:
                break
            time.sleep(0.2)
        assert worker.poll() is None, "the worker finished before it could be killed"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    partial = target.events_by_job()
    assert 0 < len(partial) < len(jobs)

    result = shift_start_sync(DAY.date())
    assert result.report(target.platform).failed == 0
    counts = target.events_by_job()
    assert set(counts) == jobs
    assert [job for job, n in counts.items() if n > 1] == []
