"""Intake benchmark: sustained requests per second on loopback, latency, and nothing lost.

    python -m benchmarks.intake [--rate 200] [--seconds 30] [--postgres [ADMIN_URL]]

Starts a real Prefect server (SQLite) and `fieldsync intake serve` (SQLite store, outbox
relay on), then sends bookings through the intake's own API on an open-loop schedule: request
i leaves at start + i/rate whatever happened to the ones before, and its latency is measured
from that scheduled moment, so a stall shows up in the figures instead of slowing the load
(no coordinated omission). Afterwards: every accepted request must be in the store and its
event must have reached Prefect's events API.

Baseline in the same run: a naive intake that sends each event to Prefect inside the request,
measured as the latency of that one POST /api/events done sequentially; it would add to
every request, and it fails every booking while Prefect is down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from sqlalchemy import func, select

from fieldsync.intake import tokens
from fieldsync.stack import Stack
from fieldsync.store.db import migrate, session_scope
from fieldsync.store.tables import IntakeRequest, Technician
from tests.caldav_servers import free_port
from tests.pg import PG_ADMIN_URL, drop_database, fresh_database


def _seed(db: str, technicians: int) -> str:
    from datetime import time as clock

    migrate(db)
    with session_scope(db) as session:
        for n in range(technicians):
            session.add(
                Technician(
                    id=f"T{n}",
                    name=f"Tech {n}",
                    email=f"t{n}@example.com",
                    timezone="America/Chicago",
                    shift_start=clock(7),
                    shift_end=clock(18),
                    skills=[],
                    region="bench",
                )
            )
        session.flush()
        return tokens.issue(session, "api", "bench")


def _booking(i: int, technicians: int) -> dict[str, Any]:
    day = datetime(2027, 1, 4, 14, tzinfo=UTC) + timedelta(days=i // (technicians * 8))
    slot = (i // technicians) % 8
    return {
        "source": "portal",
        "source_id": f"bench-{i}",
        "technician_id": f"T{i % technicians}",
        "job_type": "AC repair",
        "start": (day + timedelta(hours=slot)).isoformat(),
        "duration_minutes": 45,
        "customer_name": f"Customer {i}",
        "address": f"{i} Main St",
    }


async def _load(
    url: str, key: str, rate: float, seconds: float, technicians: int
) -> dict[str, Any]:
    # aiohttp, not httpx, for the load: on 2 shared cores the client's own CPU cost would
    # otherwise show up as server latency.
    total = int(rate * seconds)
    bodies = [json.dumps(_booking(i, technicians)).encode() for i in range(total)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as client:
        start = time.perf_counter() + 0.2

        async def one(i: int) -> None:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                async with client.post("/v1/appointments", data=bodies[i]) as response:
                    await response.read()
                    code = response.status
            except aiohttp.ClientError:
                code = -1
            latencies.append(time.perf_counter() - due)
            statuses[code] = statuses.get(code, 0) + 1

        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "sent": total,
        "elapsed": elapsed,
        "statuses": statuses,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "max": latencies[-1] * 1000,
    }


def _naive_emit(api_url: str, n: int = 200) -> float:
    """p99 ms of sending one event to Prefect synchronously, as a naive intake would."""
    times = []
    with httpx.Client(base_url=api_url, timeout=30) as client:
        for i in range(n):
            event = {
                "id": str(uuid.uuid4()),
                "occurred": datetime.now(UTC).isoformat(),
                "event": "fieldsync.bench.naive",
                "resource": {"prefect.resource.id": f"fieldsync.bench.{i}"},
            }
            began = time.perf_counter()
            client.post("events", json=[event]).raise_for_status()
            times.append(time.perf_counter() - began)
    times.sort()
    return times[int(len(times) * 0.99) - 1] * 1000


def _events_in_prefect(api_url: str, since: datetime) -> int:
    body = {
        "filter": {
            "occurred": {"since": since.isoformat()},
            "event": {"name": ["fieldsync.appointment.booked"]},
        },
        "time_unit": "day",
        "time_interval": 1.0,
    }
    response = httpx.post(f"{api_url}/events/count-by/event", json=body, timeout=30)
    response.raise_for_status()
    return sum(int(row["count"]) for row in response.json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--technicians", type=int, default=200)
    parser.add_argument(
        "--workers", type=int, default=1, help="intake processes (PostgreSQL store only)"
    )
    parser.add_argument(
        "--postgres", metavar="ADMIN_URL", nargs="?", const=PG_ADMIN_URL,
        help="store on a fresh PostgreSQL database created through ADMIN_URL (default %(const)s)",
    )  # fmt: skip
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="fieldsync-intake-bench-"))
    db = (
        fresh_database(args.postgres, prefix="fieldsync_bench")
        if args.postgres
        else f"sqlite:///{home / 'store.db'}"
    )
    try:
        _run(args, home, db)
    finally:
        if args.postgres:
            drop_database(args.postgres, db)


def _run(args: argparse.Namespace, home: Path, db: str) -> None:
    store = "PostgreSQL" if db.startswith("postgresql") else "SQLite"
    key = _seed(db, args.technicians)
    stack = Stack(
        home,
        prefect_port=free_port(),
        intake_port=free_port(),
        env_extra={"DATABASE_URL": db, "FIELDSYNC_FEED_DIR": str(home / "feeds")},
    )
    since = datetime.now(UTC) - timedelta(minutes=1)
    try:
        stack.start_prefect()
        stack.start_intake(workers=args.workers)
        print(
            f"intake benchmark: {args.rate:.0f} req/s for {args.seconds:.0f} s on loopback, "
            f"{store} store, {args.workers} intake process(es), real Prefect server; "
            f"{args.technicians} technicians"
        )
        result = asyncio.run(
            _load(stack.intake_url, key, args.rate, args.seconds, args.technicians)
        )
        accepted = sum(n for code, n in result["statuses"].items() if 200 <= code < 300)
        drained = time.perf_counter()
        while True:
            waiting = httpx.get(f"{stack.intake_url}/healthz").json()["events_waiting"]
            if waiting == 0 or time.perf_counter() - drained > 120:
                break
            time.sleep(0.2)
        drain_s = time.perf_counter() - drained
        with session_scope(db) as session:
            stored = session.scalar(select(func.count()).select_from(IntakeRequest)) or 0
        # Prefect persists received events asynchronously: give it until they are all counted.
        waited = time.perf_counter()
        in_prefect = _events_in_prefect(stack.api_url, since)
        while in_prefect < accepted and time.perf_counter() - waited < 60:
            time.sleep(1)
            in_prefect = _events_in_prefect(stack.api_url, since)
        naive_p99 = _naive_emit(stack.api_url)
    finally:
        stack.stop_all()

    achieved = result["sent"] / result["elapsed"]
    print(
        f"  sent            {result['sent']} requests in {result['elapsed']:.1f} s "
        f"({achieved:.0f} req/s achieved)"
    )
    print(f"  answers         {dict(sorted(result['statuses'].items()))}")
    print(
        f"  latency         p50 {result['p50']:.1f} ms   p99 {result['p99']:.1f} ms   "
        f"max {result['max']:.1f} ms   (target p99 <= 50 ms)"
    )
    print(f"  stored          {stored} of {accepted} accepted")
    print(
        f"  in Prefect      {in_prefect} events of {accepted} accepted "
        f"(outbox drained {drain_s:.1f} s after the load)"
    )
    print(f"  lost            {accepted - min(stored, in_prefect)}")
    print(
        f"  naive baseline  one synchronous POST /api/events per request: "
        f"p99 {naive_p99:.1f} ms on its own, added to every request,"
        " and a failed booking whenever Prefect is down"
    )


if __name__ == "__main__":
    main()
