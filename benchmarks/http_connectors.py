"""2,000-event shift start against the Google Calendar and Microsoft Graph fakes, over real
loopback HTTP, batched versus one request per event.

    python -m benchmarks.http_connectors [--technicians 100] [--jobs 20]

Prints, per platform and path: wall time, HTTP requests to the calendar API, and requests per
event pushed. Google's quotas stay at their real values (a batch of n counts as n requests
against them), so rate limiting is part of the wall time, as it would be in production.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import certifi
from pydantic import SecretStr

from benchmarks.dataset import DAY, build
from connectors.base import CalendarConnector


@contextmanager
def one_request_per_event(cls: type[CalendarConnector]) -> Iterator[None]:
    """The naive path: the contract's default push, one API call per operation."""
    batched = cls.__dict__["push"]
    cls.push = CalendarConnector.push  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.push = batched  # type: ignore[method-assign]


def _google(work: Path, technicians: int, jobs: int) -> tuple[str, Callable[[], int], Any]:
    from blocks.google import GoogleWorkspaceCredentials
    from tests.fakes.google_calendar import FakeGoogleCalendar

    fake = FakeGoogleCalendar().start()
    key = fake.add_service_account()
    GoogleWorkspaceCredentials(
        service_account_info=SecretStr(json.dumps(key.info)), api_base_url=fake.base_url
    ).save("bench-google", overwrite=True)
    url = f"sqlite:///{work / 'google.db'}"
    build(url, technicians, jobs, ("google_workspace",),
          calendar_for=lambda tech, _p: f"{tech.lower()}@acme.example",
          blocks={"google_workspace": "fieldsync-google-workspace/bench-google"})  # fmt: skip
    return url, lambda: fake.http_requests - fake.token_requests, fake


def _graph(work: Path, technicians: int, jobs: int) -> tuple[str, Callable[[], int], Any]:
    from blocks.microsoft import MicrosoftGraphCredentials
    from tests.fakes.graph import FakeGraph, tls_material

    fake = FakeGraph().start()
    bundle = work / "ca.pem"
    bundle.write_text(Path(certifi.where()).read_text() + tls_material().cert_pem)
    os.environ["SSL_CERT_FILE"] = str(bundle)
    for t in range(technicians):
        fake.add_mailbox(f"t{t:05d}@acme.example")
    MicrosoftGraphCredentials(
        tenant_id=fake.tenant_id, client_id=fake.client_id,
        client_secret=SecretStr(fake.client_secret), authority_host=fake.base_url,
        api_base_url=fake.api_base_url,
    ).save("bench-graph", overwrite=True)  # fmt: skip
    url = f"sqlite:///{work / 'graph.db'}"
    build(url, technicians, jobs, ("outlook",),
          calendar_for=lambda tech, _p: f"{tech.lower()}@acme.example",
          blocks={"outlook": "fieldsync-microsoft-graph/bench-graph"})  # fmt: skip
    return url, lambda: fake.graph_requests, fake


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--technicians", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from connectors.google_calendar import GoogleCalendarConnector
    from connectors.graph import MicrosoftGraphConnector
    from flows.shift_start import shift_start_sync

    events = args.technicians * args.jobs
    print(f"{events} events per platform ({args.technicians} calendars x {args.jobs} jobs)")
    work = Path(tempfile.mkdtemp(prefix="fieldsync-http-bench-"))
    rows = []
    try:
        with (
            prefect_test_harness(server_startup_timeout=120),
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        ):
            for name, setup, cls in (
                ("google", _google, GoogleCalendarConnector),
                ("graph", _graph, MicrosoftGraphConnector),
            ):
                for path in ("batched", "per-event"):
                    sub = work / f"{name}-{path}"
                    sub.mkdir()
                    url, requests, fake = setup(sub, args.technicians, args.jobs)
                    os.environ["DATABASE_URL"] = url
                    before = requests()
                    t0 = time.perf_counter()
                    if path == "batched":
                        result = shift_start_sync(DAY.date())
                    else:
                        with one_request_per_event(cls):
                            result = shift_start_sync(DAY.date())
                    wall = time.perf_counter() - t0
                    sent = requests() - before
                    fake.stop()
                    rows.append((name, path, wall, sent, result.writes))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'platform':<8} {'path':<10} {'wall':>8} {'API requests':>13} {'per event':>10}")
    for name, path, wall, sent, writes in rows:
        print(f"{name:<8} {path:<10} {wall:>7.2f}s {sent:>13} {sent / max(1, writes):>10.3f}")
    for name in ("google", "graph"):
        batched, naive = (r for r in rows if r[0] == name)
        print(f"{name}: batching sends {naive[3] / max(1, batched[3]):.0f}x fewer requests, "
              f"{naive[2] / batched[2]:.1f}x the speed")  # fmt: skip


if __name__ == "__main__":
    main()
