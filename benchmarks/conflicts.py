"""Conflict engine benchmark: 100,000 appointments across 2,000 technicians, all checks on.

    python -m benchmarks.conflicts [--technicians 2000] [--days 5] [--jobs-per-day 10]
                                   [--sample 5000] [--repeat 3]

Pure domain code, no store and no Prefect: the dataset is built in memory as the flows hand it
to the detector (UTC datetimes, as the store returns them; input order shuffled, so every
technician's day must be sorted). A work week in six time zones, one with a 30-minute DST
offset, with a sprinkling of every kind of problem and busy blocks read from each calendar.

Prints the engine's best-of-N wall time, the old overlap/travel detector on the same data for
reference, and the naive O(n^2) pairwise overlap check, measured in this same run on a sample
of whole technicians and scaled by n^2 to the full size (labelled as scaled).
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

from connectors.base import BusyBlock
from fieldsync.conflict_engine import ConflictEngine
from fieldsync.conflicts import ConflictFinding, OverlapTravelDetector
from fieldsync.domain import (
    AppointmentStatus,
    EnrichedJob,
    JobTypeView,
    JobView,
    Priority,
    TechnicianView,
)

MONDAY = date(2026, 11, 30)
ZONES = [
    "America/Chicago",
    "America/New_York",
    "America/Denver",
    "America/Los_Angeles",
    "Europe/London",
    "Australia/Lord_Howe",
]
JOB_TYPES = [
    JobTypeView("AC repair", frozenset({"hvac"}), setup_minutes=5),
    JobTypeView("Furnace tune-up", frozenset({"hvac"}), setup_minutes=10),
    JobTypeView("Panel upgrade", frozenset({"hvac", "electrical"}), setup_minutes=10),
]
# Per-job chances of each injected problem: a few hundred of each over 100,000 jobs, as a
# busy week might really hold (thousands of findings would measure string formatting instead).
P_OVERLAP, P_FAR, P_WRONG_SKILL, P_MISSING, P_CANCELED = 0.003, 0.002, 0.003, 0.005, 0.03
# Per technician-day.
P_EARLY_DAY, P_SATURDAY, P_PERSONAL_AT_NOON = 0.03, 0.003, 0.03
_HOUR = timedelta(hours=1)

Dataset = tuple[list[EnrichedJob], dict[str, list[BusyBlock]]]


def build(technicians: int, days: int, jobs_per_day: int, seed: int = 7) -> Dataset:
    rng = random.Random(seed)
    jobs: list[EnrichedJob] = []
    busy: dict[str, list[BusyBlock]] = {}
    for t in range(technicians):
        zone_name = ZONES[t % len(ZONES)]
        zone = ZoneInfo(zone_name)
        home = (32.5 + rng.random(), -97.5 + rng.random())
        skills = frozenset({"hvac"} if t % 7 else {"hvac", "electrical"})
        tech = TechnicianView(
            f"T{t:05d}", f"Technician {t}", zone_name, clock(7), clock(17),
            (0, 1, 2, 3, 4), skills, *home, f"r{t % 10}",
        )  # fmt: skip
        electrician = "electrical" in skills
        mine: list[BusyBlock] = []
        for d in range(days):
            day = MONDAY + timedelta(days=d)
            if rng.random() < P_SATURDAY:
                day += timedelta(days=5 - day.weekday())
            local = datetime.combine(day, clock(7), tzinfo=zone) + timedelta(
                minutes=rng.choice([0, 5, 10])
            )
            if rng.random() < P_EARLY_DAY:
                local -= timedelta(minutes=45)
            for j in range(jobs_per_day):
                length = rng.choice([20, 25, 30])
                start = local
                if j and rng.random() < P_OVERLAP:
                    start -= timedelta(minutes=30)  # double-booked onto the previous job
                end = start + timedelta(minutes=length)
                local = end + timedelta(minutes=rng.choice([15, 20, 25]))
                site = (home[0] + rng.random() / 100, home[1] + rng.random() / 100)
                if rng.random() < P_FAR:
                    site = (site[0] + 0.3, site[1])  # ~33 km away, no time to drive there
                if (electrician and rng.random() < 0.3) or rng.random() < P_WRONG_SKILL:
                    job_type = JOB_TYPES[2]
                else:
                    job_type = JOB_TYPES[j % 2]
                job_id = f"J{t:05d}{d}{j:02d}"
                status = (
                    AppointmentStatus.CANCELED
                    if rng.random() < P_CANCELED
                    else AppointmentStatus.SCHEDULED
                )
                view = JobView(
                    job_id, "crm", job_id, tech.id, status, Priority.NORMAL, job_type.name,
                    start.astimezone(UTC), end.astimezone(UTC), f"Customer {t}-{d}-{j}",
                    "+1 214 555 0100", "", f"{100 + j} Main St", *site, "", 1,
                )  # fmt: skip
                missing = ("R410A",) if rng.random() < P_MISSING else ()
                jobs.append(EnrichedJob(view, tech, job_type, missing_materials=missing))
                if j in (2, 6):  # our own events, echoed back by the calendar
                    mine.append(BusyBlock(view.start, view.end, job_id))
            # One personal appointment a day, now and then inside working hours.
            hour = 12 if rng.random() < P_PERSONAL_AT_NOON else rng.choice([6, 18])
            personal = datetime.combine(day, clock(hour), tzinfo=zone).astimezone(UTC)
            mine.append(BusyBlock(personal, personal + _HOUR))
        busy[tech.id] = mine
    rng.shuffle(jobs)
    return jobs, busy


def naive_overlaps(jobs: Sequence[EnrichedJob]) -> set[tuple[str, str]]:
    """Every pair against every other: what the sweep replaces."""
    rows = [
        (e.technician.id, e.job.start, e.job.end, e.job.id)
        for e in jobs
        if e.technician is not None and e.job.is_open
    ]
    found: set[tuple[str, str]] = set()
    for i, (tech_a, start_a, end_a, id_a) in enumerate(rows):
        for tech_b, start_b, end_b, id_b in rows[i + 1 :]:
            if tech_a == tech_b and start_a < end_b and start_b < end_a:
                found.add((min(id_a, id_b), max(id_a, id_b)))
    return found


def best_of(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--technicians", type=int, default=2000)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--jobs-per-day", type=int, default=10)
    parser.add_argument("--sample", type=int, default=5000, help="jobs in the naive sample")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    jobs, busy = build(args.technicians, args.days, args.jobs_per_day)
    n = len(jobs)
    external = sum(1 for blocks in busy.values() for b in blocks if b.job_id is None)
    blocks = sum(len(b) for b in busy.values())
    print(
        f"dataset: {n:,} appointments, {args.technicians:,} technicians in {len(ZONES)} zones, "
        f"{args.days} days from {MONDAY}; {blocks:,} busy blocks ({external:,} external)"
    )

    engine = ConflictEngine(busy=busy)
    findings: list[ConflictFinding] = []

    def run_engine() -> None:
        findings[:] = engine.detect(jobs)

    engine_s = best_of(args.repeat, run_engine)
    old_s = best_of(args.repeat, lambda: OverlapTravelDetector().detect(jobs))
    counts = Counter(f.kind for f in findings)
    print(f"ConflictEngine.detect, all checks     {engine_s:8.3f} s  (best of {args.repeat})")
    print(f"  OverlapTravelDetector alone          {old_s:8.3f} s  (reference, same data)")
    print(
        "  findings: "
        + ", ".join(
            f"{kind} {counts[kind]}"
            for kind in ("overlap", "travel", "shift", "skill", "materials", "busy")
        )
    )

    # The sample is whole technicians, so it holds as many overlaps per job as the full set.
    per_tech = n // args.technicians
    wanted = {f"T{t:05d}" for t in range(max(1, args.sample // per_tech))}
    sample = [e for e in jobs if e.technician is not None and e.technician.id in wanted]
    pairs: set[tuple[str, str]] = set()

    def run_naive() -> None:
        pairs.clear()
        pairs.update(naive_overlaps(sample))

    naive_s = best_of(1, run_naive)
    scaled_s = naive_s * (n / len(sample)) ** 2
    swept = {
        (min(f.appointment_ids), max(f.appointment_ids))
        for f in engine.detect(sample)
        if f.kind == "overlap"
    }
    print(
        f"naive pairwise overlap, {len(sample):,}-job sample  {naive_s:8.3f} s  (measured, "
        f"{len(pairs)} overlaps; the engine finds "
        f"{'the same' if swept == pairs else f'DIFFERENT: {len(swept)}'})"
    )
    print(
        f"naive pairwise overlap, scaled by n^2 to {n:,} jobs  {scaled_s:8.1f} s  "
        "(SCALED estimate, not measured)"
    )
    print(f"engine with all checks vs naive overlap-only (scaled): {scaled_s / engine_s:,.0f}x")
    print(f"budget 0.5 s for {n:,} jobs: {'met' if engine_s <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
