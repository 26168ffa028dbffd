"""Rescheduling options benchmark: one emergency job against 500 technicians' booked days.

    python -m benchmarks.options [--technicians 500] [--repeat 5]

Everything is in memory (no store, no Prefect): the figure is the domain code alone, timed from
the raw views (grouping, zone work, slot search, building the options), best of `--repeat`.
The other option functions are timed on the same day for reference; the budget is for the
emergency case (50 ms for 500 technicians).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

from connectors.base import BusyBlock
from fieldsync.conflicts import ConflictFinding
from fieldsync.domain import (
    AppointmentStatus,
    JobTypeView,
    JobView,
    Priority,
    TechnicianView,
)
from fieldsync.rescheduling import (
    options_for_cancellation,
    options_for_conflict,
    options_for_delay,
    options_for_emergency,
)
from fieldsync.travel import GreatCircleTravel

DAY = datetime(2026, 12, 1)  # a Tuesday; each technician's day is read in their own zone
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=ZoneInfo("America/Chicago"))
ZONES = ["America/Chicago", "America/New_York", "America/Denver", "America/Los_Angeles"]
JOB_TYPES = {
    "AC repair": JobTypeView("AC repair", frozenset({"hvac"}), setup_minutes=10),
    "Furnace tune-up": JobTypeView("Furnace tune-up", frozenset({"hvac"}), setup_minutes=5),
    "Panel upgrade": JobTypeView("Panel upgrade", frozenset({"electrical"}), setup_minutes=15),
    "Emergency AC": JobTypeView("Emergency AC", frozenset({"hvac"}), setup_minutes=15),
}


@dataclass
class Dataset:
    technicians: list[TechnicianView]
    jobs: list[JobView]
    busy: dict[str, list[BusyBlock]]
    emergency: JobView


def _job(jid: str, tech: str | None, start: datetime, minutes: int, **kw: Any) -> JobView:
    return JobView(
        jid,
        "crm",
        jid,
        tech,
        kw.get("status", AppointmentStatus.SCHEDULED),
        kw.get("priority", Priority.NORMAL),
        kw.get("job_type", "AC repair"),
        start,
        start + timedelta(minutes=minutes),
        "Customer",
        "+1 214 555 0100",
        "",
        "1 Main St",
        kw.get("lat"),
        kw.get("lon"),
        "",
        1,
    )


def _status(start: datetime, minutes: int) -> AppointmentStatus:
    if start + timedelta(minutes=minutes) <= NOW:
        return AppointmentStatus.COMPLETED
    return AppointmentStatus.IN_PROGRESS if start <= NOW else AppointmentStatus.SCHEDULED


def build(technicians: int, seed: int = 7) -> Dataset:
    rng = random.Random(seed)
    techs: list[TechnicianView] = []
    jobs: list[JobView] = []
    busy: dict[str, list[BusyBlock]] = {}
    for t in range(technicians):
        tid = f"T{t:04d}"
        zone = ZoneInfo(ZONES[t % len(ZONES)])
        lat, lon = 32.4 + rng.random() * 0.8, -97.4 + rng.random() * 0.8
        skills = {"hvac"} if rng.random() < 0.8 else {"electrical"}
        if rng.random() < 0.2:
            skills.add("electrical")
        techs.append(
            TechnicianView(
                tid,
                f"Technician {t}",
                zone.key,
                clock(7),
                clock(19),
                (0, 1, 2, 3, 4) if rng.random() < 0.9 else (2, 3, 4, 5, 6),
                frozenset(skills),
                lat,
                lon,
                f"r{t % 10}",
            )
        )
        at = DAY.replace(hour=7, minute=30, tzinfo=zone)
        for j in range(rng.randint(8, 10)):
            minutes = rng.choice([30, 45, 60, 60, 75])
            kinds = (
                ["Panel upgrade"] if skills == {"electrical"} else ["AC repair", "Furnace tune-up"]
            )
            job_type = rng.choice(kinds)
            jobs.append(
                _job(
                    f"J{t:04d}{j:02d}",
                    tid,
                    at,
                    minutes,
                    lat=lat + rng.uniform(-0.1, 0.1),
                    lon=lon + rng.uniform(-0.1, 0.1),
                    priority=rng.choice([Priority.LOW, Priority.NORMAL, Priority.NORMAL]),
                    job_type=job_type,
                    status=_status(at, minutes),
                )
            )
            at += timedelta(minutes=minutes + rng.choice([10, 15, 20, 30]))
        if t % 3 == 0:
            lunch = DAY.replace(hour=12, minute=30, tzinfo=zone)
            busy[tid] = [BusyBlock(lunch, lunch + timedelta(minutes=30))]
    emergency = _job(
        "EMERGENCY-1",
        None,
        NOW,
        90,
        lat=32.8,
        lon=-97.0,
        priority=Priority.EMERGENCY,
        job_type="Emergency AC",
        status=AppointmentStatus.BOOKED,
    )
    return Dataset(techs, jobs, busy, emergency)


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    runs = []
    result: object = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
    return min(runs) * 1000, statistics.median(runs) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--technicians", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = build(args.technicians)
    travel = GreatCircleTravel()
    common: dict[str, Any] = {
        "technicians": data.technicians,
        "jobs": data.jobs,
        "job_types": JOB_TYPES,
        "busy": data.busy,
        "travel": travel,
        "now": NOW,
    }
    open_jobs = sum(j.is_open for j in data.jobs)
    print(
        f"dataset: {len(data.technicians)} technicians, {len(data.jobs)} jobs "
        f"({open_jobs} still open at {NOW:%H:%M %Z}), "
        f"{sum(map(len, data.busy.values()))} busy blocks, 4 time zones"
    )

    best, median, result = _time(
        lambda: options_for_emergency(data.emergency, **common), args.repeat
    )
    assert isinstance(result, list)
    print(f"emergency, all technicians:     best {best:6.1f} ms  median {median:6.1f} ms")
    for o in result:
        print(f"  #{o.rank} {o.technician_id} {o.start:%H:%M %Z} moves={len(o.moves)}: {o.reason}")
    budget = "ok" if best <= 50 else "OVER BUDGET"
    print(f"budget 50 ms: {budget}")

    best, median, _ = _time(
        lambda: options_for_emergency(data.emergency, **common, limit=50), args.repeat
    )
    print(f"emergency, limit=50:            best {best:6.1f} ms  median {median:6.1f} ms")

    # Reference figures for the other functions on the same day (not budgeted).
    tech0 = data.technicians[0].id
    later = [j for j in data.jobs if j.technician_id == tech0 and j.is_open]
    canceled, delayed = later[0], later[0]
    waiting = [
        _job(f"W{i}", None, NOW + timedelta(hours=2), 45, lat=32.8, lon=-97.1) for i in range(20)
    ]
    best, median, _ = _time(
        lambda: options_for_cancellation(canceled, waiting, **common), args.repeat
    )
    print(f"cancellation (+20 waiting):     best {best:6.1f} ms  median {median:6.1f} ms")
    best, median, _ = _time(
        lambda: options_for_delay(delayed, delayed.start + timedelta(minutes=50), **common),
        args.repeat,
    )
    print(f"delay (50 min):                 best {best:6.1f} ms  median {median:6.1f} ms")
    finding = ConflictFinding(tech0, "overlap", "critical", (later[0].id, later[1].id), "")
    best, median, _ = _time(lambda: options_for_conflict(finding, **common), args.repeat)
    print(f"conflict:                       best {best:6.1f} ms  median {median:6.1f} ms")


if __name__ == "__main__":
    main()
