from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import BusyBlock
from fieldsync.conflict_engine import ConflictEngine
from fieldsync.conflicts import ConflictDetector, ConflictFinding, OverlapTravelDetector
from fieldsync.domain import (
    AppointmentStatus,
    EnrichedJob,
    JobTypeView,
    JobView,
    Priority,
    TechnicianView,
)
from fieldsync.travel import GreatCircleTravel

CHICAGO = "America/Chicago"
DALLAS = (32.78, -96.80)
FORT_WORTH = (32.75, -97.33)  # ~50 km from Dallas: ~98 min at 40 km/h x 1.3
AC = JobTypeView("AC repair", frozenset({"hvac"}), setup_minutes=10)
WEEKDAYS = (0, 1, 2, 3, 4)
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)
TUE = date(2026, 12, 1)


def technician(
    tech_id: str = "T1",
    tz: str = CHICAGO,
    shift: tuple[time, time] = (time(7), time(17)),
    work_days: tuple[int, ...] = WEEKDAYS,
    skills: frozenset[str] = frozenset({"hvac"}),
) -> TechnicianView:
    return TechnicianView(
        tech_id, "Maria", tz, shift[0], shift[1], work_days, skills, *DALLAS, "dfw"
    )


TECH = technician()


def at(day: date, hour: int, minute: int = 0, tz: str = CHICAGO) -> datetime:
    """A local wall-clock time, handed to the engine as UTC like the store does, so the engine
    cannot read the local clock off the datetime's own fields."""
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def job(
    job_id: str,
    start: datetime,
    minutes: int = 60,
    tech: TechnicianView | None = TECH,
    job_type: JobTypeView | None = AC,
    site: tuple[float, float] = DALLAS,
    status: AppointmentStatus = AppointmentStatus.SCHEDULED,
    missing: tuple[str, ...] = (),
) -> EnrichedJob:
    view = JobView(
        job_id, "portal", job_id, tech.id if tech else None, status, Priority.NORMAL,
        job_type.name if job_type else "Mystery", start, start + timedelta(minutes=minutes),
        "c", "", "", "addr", site[0], site[1], "", 1,
    )  # fmt: skip
    return EnrichedJob(view, tech, job_type, missing_materials=missing)


def summary(found: Sequence[ConflictFinding]) -> list[tuple[str, tuple[str, ...], str]]:
    return sorted((f.kind, f.appointment_ids, f.severity) for f in found)


def flagged(found: Sequence[ConflictFinding], kind: str) -> set[str]:
    return {i for f in found if f.kind == kind for i in f.appointment_ids}


def test_a_clean_day_has_no_findings() -> None:
    detector: ConflictDetector = ConflictEngine()  # drops into the seam the flows call
    jobs = [job("J1", at(TUE, 7), 60), job("J2", at(TUE, 8, 15), 90), job("J3", at(TUE, 16), 60)]
    assert detector.detect(jobs) == []


Case = Callable[[], tuple[ConflictEngine, list[EnrichedJob]]]
OUTSIDER = BusyBlock(at(TUE, 8, 30), at(TUE, 9, 30))  # a dentist's appointment, not ours


CASES: dict[str, tuple[Case, list[tuple[str, tuple[str, ...], str]]]] = {
    "overlap": (
        lambda: (ConflictEngine(), [job("J1", at(TUE, 8)), job("J2", at(TUE, 8, 30))]),
        [("overlap", ("J1", "J2"), "critical")],
    ),
    "travel": (
        lambda: (
            ConflictEngine(),
            [job("J1", at(TUE, 8)), job("J2", at(TUE, 9, 30), site=FORT_WORTH)],
        ),
        [("travel", ("J1", "J2"), "warning")],
    ),
    "setup buffer on the same site": (
        lambda: (ConflictEngine(), [job("J1", at(TUE, 8)), job("J2", at(TUE, 9, 5))]),
        [("travel", ("J1", "J2"), "warning")],
    ),
    "before the shift": (
        lambda: (ConflictEngine(), [job("J1", at(TUE, 6))]),
        [("shift", ("J1",), "warning")],
    ),
    "after the shift": (
        lambda: (ConflictEngine(), [job("J1", at(TUE, 16, 30))]),
        [("shift", ("J1",), "warning")],
    ),
    "non-working day": (
        lambda: (ConflictEngine(), [job("J1", at(date(2026, 12, 5), 10))]),
        [("shift", ("J1",), "warning")],
    ),
    "skill": (
        lambda: (
            ConflictEngine(),
            [job("J1", at(TUE, 8), job_type=JobTypeView("Panel", frozenset({"hvac", "elec"})))],
        ),
        [("skill", ("J1",), "critical")],
    ),
    "materials": (
        lambda: (ConflictEngine(), [job("J1", at(TUE, 8), missing=("R410A",))]),
        [("materials", ("J1",), "warning")],
    ),
    "external busy time": (
        lambda: (ConflictEngine(busy={"T1": [OUTSIDER]}), [job("J1", at(TUE, 8))]),
        [("busy", ("J1",), "critical")],
    ),
    "unknown job type": (
        lambda: (
            ConflictEngine(),
            [job("J1", at(TUE, 8), tech=technician(skills=frozenset()), job_type=None)],
        ),
        [],
    ),
    "our own events on the calendar": (
        lambda: (
            ConflictEngine(
                busy={
                    "T1": [
                        BusyBlock(at(TUE, 8), at(TUE, 9), job_id="J1"),
                        BusyBlock(at(TUE, 8, 30), at(TUE, 9, 30), job_id="J-ELSEWHERE"),
                    ]
                }
            ),
            [job("J1", at(TUE, 8))],
        ),
        [],
    ),
    "busy time just touching the job": (
        lambda: (
            ConflictEngine(
                busy={
                    "T1": [
                        BusyBlock(at(TUE, 7), at(TUE, 8)),
                        BusyBlock(at(TUE, 9), at(TUE, 10)),
                    ]
                }
            ),
            [job("J1", at(TUE, 8))],
        ),
        [],
    ),
    "another technician's busy time": (
        lambda: (ConflictEngine(busy={"T2": [OUTSIDER]}), [job("J1", at(TUE, 8))]),
        [],
    ),
    "closed jobs": (
        lambda: (
            ConflictEngine(busy={"T1": [OUTSIDER]}),
            [
                job(
                    "J1",
                    at(date(2026, 12, 5), 6),
                    status=AppointmentStatus.CANCELED,
                    missing=("R410A",),
                    job_type=JobTypeView("Panel", frozenset({"elec"})),
                ),
                job("J2", at(date(2026, 12, 5), 6, 30), status=AppointmentStatus.COMPLETED),
                job("J3", at(TUE, 8), status=AppointmentStatus.CANCELED),
            ],
        ),
        [],
    ),
    "no technician": (
        lambda: (
            ConflictEngine(),
            [job("J1", at(TUE, 5), tech=None), job("J2", at(TUE, 5), tech=None)],
        ),
        [],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_check_finds_what_it_should_and_nothing_else(name: str) -> None:
    case, expected = CASES[name]
    engine, jobs = case()
    assert summary(engine.detect(jobs)) == expected


def test_details_are_readable_in_the_technicians_own_zone() -> None:
    engine = ConflictEngine(busy={"T1": [OUTSIDER]})
    panel = JobTypeView("Panel", frozenset({"hvac", "elec"}))
    found = engine.detect(
        [
            job("J1", at(TUE, 6)),
            job("J2", at(date(2026, 12, 5), 10)),
            job("J3", at(TUE, 8), job_type=panel, missing=("R410A", "CAP")),
        ]
    )
    details = {(f.kind, f.appointment_ids[0]): f.detail for f in found}
    assert details[("shift", "J1")] == (
        "J1 (Tue 2026-12-01 06:00-07:00) is outside the 07:00-17:00 shift in America/Chicago"
    )
    assert "non-working day (Saturday)" in details[("shift", "J2")]
    assert details[("skill", "J3")] == "J3 (Panel) needs elec, which Maria lacks"
    assert details[("materials", "J3")] == "J3 needs materials out of stock: R410A, CAP"
    assert details[("busy", "J3")] == (
        "J3 (Tue 2026-12-01 08:00-09:00) overlaps busy time Tue 2026-12-01 08:30-09:30 "
        "on Maria's calendar"
    )


def test_travel_speed_and_detour_are_configurable() -> None:
    jobs = [job("J1", at(TUE, 8)), job("J2", at(TUE, 10, 30), site=FORT_WORTH)]  # 90 min gap
    assert flagged(ConflictEngine().detect(jobs), "travel") == {"J1", "J2"}
    fast = ConflictEngine(GreatCircleTravel(speed_kmh=60))
    assert fast.detect(jobs) == []
    assert ConflictEngine(GreatCircleTravel(speed_kmh=60, detour_factor=2.0)).detect(jobs)


DST_DAYS = [
    ("America/New_York", date(2026, 3, 8)),  # spring forward, 02:00 -> 03:00
    ("America/New_York", date(2026, 11, 1)),  # fall back, 02:00 -> 01:00
    ("Europe/London", date(2026, 3, 29)),
    ("Europe/London", date(2026, 10, 25)),
    ("Australia/Lord_Howe", date(2026, 10, 4)),  # forward by 30 minutes, 02:00 -> 02:30
    ("Australia/Lord_Howe", date(2026, 4, 5)),  # back by 30 minutes, 02:00 -> 01:30
]


@pytest.mark.parametrize(("tz", "day"), DST_DAYS, ids=[f"{z}-{d}" for z, d in DST_DAYS])
def test_a_0700_shift_stays_0700_local_on_dst_days(tz: str, day: date) -> None:
    zone = ZoneInfo(tz)
    midnight, noon = (datetime.combine(day, time(h), tzinfo=zone) for h in (0, 12))
    assert midnight.utcoffset() != noon.utcoffset()  # the day really is a DST change

    tech = technician(tz=tz, work_days=EVERY_DAY)
    jobs = [
        job("inside-0730", at(day, 7, 30, tz), 60, tech),
        job("outside-0630", at(day, 6, 30, tz), 60, tech),
        # 10 minutes off the boundaries: a window off by a 30-minute DST change shows here.
        job("inside-0710", at(day, 7, 10, tz), 10, tech),
        job("inside-1620", at(day, 16, 20, tz), 30, tech),
        job("outside-1650", at(day, 16, 50, tz), 30, tech),
    ]
    found = ConflictEngine().detect(jobs)
    assert flagged(found, "shift") == {"outside-0630", "outside-1650"}


def test_shift_times_the_clocks_skip_or_repeat_are_read_like_icalendar() -> None:
    """RFC 5545 3.3.5, as the calendars we write to read them: a repeated time is its first
    occurrence; a skipped one takes the offset from before the gap."""
    ny = "America/New_York"
    edt, est = timezone(timedelta(hours=-4)), timezone(timedelta(hours=-5))
    evening = technician(tz=ny, shift=(time(17), time(1, 30)), work_days=EVERY_DAY)
    early = technician("T2", tz=ny, shift=(time(2, 30), time(10)), work_days=EVERY_DAY)

    def wall(day: date, hour: int, minute: int, offset: tzinfo) -> datetime:
        return datetime.combine(day, time(hour, minute), tzinfo=offset).astimezone(UTC)

    fall, spring = date(2026, 11, 1), date(2026, 3, 8)
    jobs = [
        # Saturday's evening shift ends at the first 01:30 of the night the clocks go back.
        job("first-0100", wall(fall, 1, 0, edt), 30, evening),
        job("second-0100", wall(fall, 1, 0, est), 30, evening),
        # 02:30 does not exist on spring-forward night: the shift starts at 03:30 EDT.
        job("edt-0315", wall(spring, 3, 15, edt), 30, early),
        job("edt-0330", wall(spring, 3, 30, edt), 30, early),
    ]
    assert flagged(ConflictEngine().detect(jobs), "shift") == {"second-0100", "edt-0315"}


def test_a_job_past_local_midnight_is_outside_a_day_shift() -> None:
    found = ConflictEngine().detect([job("J1", at(TUE, 16), 8 * 60 + 30)])
    assert summary(found) == [("shift", ("J1",), "warning")]
    assert "Tue 2026-12-01 16:00-00:30 (+1 day)" in found[0].detail


def test_overnight_shifts_belong_to_the_evening_they_start() -> None:
    night = technician(shift=(time(22), time(6)))  # works Mon-Fri nights
    mon, wed, sat = date(2026, 11, 30), date(2026, 12, 2), date(2026, 12, 5)
    jobs = [
        job("tue-2300", at(TUE, 23), 120, night),  # across midnight, inside Tuesday's shift
        job("wed-0500", at(wed, 5), 45, night),  # still Tuesday night's shift
        job("wed-0630", at(wed, 6, 30), 30, night),
        job("sat-0200", at(sat, 2), 60, night),  # Friday night's shift, though Saturday is off
        job("sat-2230", at(sat, 22, 30), 60, night),
        job("mon-0400", at(mon, 4), 60, night),  # Sunday night is off
    ]
    found = ConflictEngine().detect(jobs)
    assert flagged(found, "shift") == {"wed-0630", "sat-2230", "mon-0400"}
    why = {f.appointment_ids[0]: f.detail for f in found}
    assert "non-working day (Saturday)" in why["sat-2230"]
    assert "outside the 22:00-06:00 shift" in why["mon-0400"]


def test_a_shift_until_midnight_ends_at_the_next_midnight() -> None:
    late = technician(shift=(time(16), time(0)))
    jobs = [job("J1", at(TUE, 23), 60, late), job("J2", at(TUE, 16), 30, late)]
    jobs.append(job("J3", at(date(2026, 12, 2), 23, 30), 60, late))
    assert flagged(ConflictEngine().detect(jobs), "shift") == {"J3"}


def test_equal_shift_times_are_a_24_hour_shift_on_working_days() -> None:
    on_call = technician(shift=(time(7), time(7)))
    thu, fri, sat = date(2026, 12, 3), date(2026, 12, 4), date(2026, 12, 5)
    jobs = [
        job("tue-0300", at(TUE, 3), 60, on_call),  # Monday's shift, still running
        job("thu-0630", at(thu, 6, 30), 60, on_call),  # across the hand-over to Thursday's
        job("fri-2300", at(fri, 23), 60, on_call),  # Friday's shift runs to Saturday 07:00
        job("sat-0630", at(sat, 6, 30), 60, on_call),  # past its end, into a day off
        job("sat-1200", at(sat, 12), 60, on_call),
    ]
    found = ConflictEngine().detect(jobs)
    assert flagged(found, "shift") == {"sat-0630", "sat-1200"}


def test_each_day_is_checked_against_its_own_shift() -> None:
    mon, wed = date(2026, 11, 30), date(2026, 12, 2)
    jobs = [
        job("mon-1600", at(mon, 16), 30),
        job("tue-0600", at(TUE, 6), 30),
        job("tue-0800", at(TUE, 8), 30),
        job("wed-0659", at(wed, 6, 59), 30),
        job("wed-1630", at(wed, 16, 30), 30),
    ]
    found = ConflictEngine().detect(list(reversed(jobs)))
    assert flagged(found, "shift") == {"tue-0600", "wed-0659"}


def test_the_jobs_own_time_zone_does_not_matter() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    jobs = [job("J1", at(TUE, 6, 30)), job("J2", at(TUE, 7)), job("J3", at(TUE, 16, 30))]
    moved = [
        replace(
            e,
            job=replace(
                e.job, start=e.job.start.astimezone(tokyo), end=e.job.end.astimezone(tokyo)
            ),
        )
        for e in jobs
    ]
    expected = ConflictEngine().detect(jobs)
    assert flagged(expected, "shift") == {"J1", "J3"}
    assert [f.fingerprint for f in ConflictEngine().detect(moved)] == [
        f.fingerprint for f in expected
    ]


def test_busy_blocks_are_matched_only_to_the_jobs_they_overlap() -> None:
    blocks = [
        BusyBlock(at(TUE, 10), at(TUE, 10, 30)),  # inside J1 only; J2 ended before it
        BusyBlock(at(TUE, 13), at(TUE, 15)),  # covers J3 and J4
        BusyBlock(at(TUE, 13), at(TUE, 15), job_id="J3"),  # J3 itself
    ]
    jobs = [
        job("J1", at(TUE, 8), 4 * 60),
        job("J2", at(TUE, 8, 30), 30),
        job("J3", at(TUE, 13), 30),
        job("J4", at(TUE, 14), 30),
        job("J5", at(TUE, 15), 30),
    ]
    found = ConflictEngine(busy={"T1": blocks}).detect(jobs)
    assert sorted(f.appointment_ids[0] for f in found if f.kind == "busy") == ["J1", "J3", "J4"]


def _scenario(shift_at: int = 0, overlap_at: int = 0, busy_at: int = 0) -> list[EnrichedJob]:
    panel = JobTypeView("Panel", frozenset({"elec"}))
    return [
        job("J1", at(TUE, 8), 60),
        job("J2", at(TUE, 8, overlap_at), 60),  # the same start: the pair's order is by id
        job("J3", at(TUE, 10, 30), 60, site=FORT_WORTH, job_type=panel, missing=("R410A",)),
        job("J4", at(TUE, 6, shift_at), 30),
        job("J5", at(TUE, 14 + busy_at), 30),
    ]


def _prints(jobs: list[EnrichedJob], busy_at: int = 0) -> dict[str, str]:
    blocks = [BusyBlock(at(TUE, 14 + busy_at), at(TUE, 15 + busy_at))]
    found = ConflictEngine(busy={"T1": blocks}).detect(jobs)
    assert sorted({f.kind for f in found}) == sorted(
        ["overlap", "travel", "shift", "skill", "materials", "busy"]
    )
    return {f.kind: f.fingerprint for f in found}


def test_fingerprints_are_stable_for_the_same_problem() -> None:
    shuffled = _scenario()
    random.Random(3).shuffle(shuffled)
    assert _prints(_scenario()) == _prints(shuffled) == _prints(_scenario()[::-1])


def test_fingerprints_change_when_the_times_change() -> None:
    before = _prints(_scenario())
    after = _prints(_scenario(shift_at=15, overlap_at=10, busy_at=1), busy_at=1)
    for kind in ("overlap", "travel", "shift", "busy"):
        assert before[kind] != after[kind], kind
    # A lacking skill or short stock is the same problem at any hour: rescheduling the job
    # must not raise the alert again.
    for kind in ("skill", "materials"):
        assert before[kind] == after[kind], kind


ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata"]
DAYS = [d for _, d in DST_DAYS] + [TUE]
OPEN, CLOSED = AppointmentStatus.SCHEDULED, AppointmentStatus.CANCELED

random_jobs = st.lists(
    st.tuples(
        st.integers(0, len(ZONES) - 1),  # technician
        # Start, minutes after the day's local midnight, and length: on a 5-minute grid, so
        # tied starts and back-to-back jobs come up often.
        st.integers(0, 2 * 24 * 12).map(lambda q: 5 * q),
        st.integers(1, 48).map(lambda q: 5 * q),
        st.sampled_from([OPEN, OPEN, OPEN, CLOSED]),
    ),
    max_size=30,
)


def _random_day(
    day: date, spans: list[tuple[int, int, int, AppointmentStatus]]
) -> list[EnrichedJob]:
    techs = [technician(f"T{i}", tz=z, work_days=(0, 2, 4, 6)) for i, z in enumerate(ZONES)]
    return [
        job(f"J{n}", at(day, 0, 0, techs[t].timezone) + timedelta(minutes=s), length, techs[t],
            status=status)
        for n, (t, s, length, status) in enumerate(spans)
    ]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(DAYS), random_jobs)
def test_overlaps_equal_a_pairwise_oracle(
    day: date, spans: list[tuple[int, int, int, AppointmentStatus]]
) -> None:
    jobs = _random_day(day, spans)
    found = ConflictEngine().detect(jobs)
    overlaps = {
        (f.technician_id, frozenset(f.appointment_ids)) for f in found if f.kind == "overlap"
    }
    oracle = {
        (a.technician.id, frozenset((a.job.id, b.job.id)))
        for i, a in enumerate(jobs)
        for b in jobs[i + 1 :]
        if a.technician is not None
        and b.technician is not None
        and a.technician.id == b.technician.id
        and a.job.is_open
        and b.job.is_open
        and a.job.start < b.job.end
        and b.job.start < a.job.end
    }
    assert overlaps == oracle
    # The engine reuses the existing sweep: its overlap and travel findings, fingerprints
    # included, are exactly what the detector it replaces reports.
    assert [f for f in found if f.kind in ("overlap", "travel")] == OverlapTravelDetector().detect(
        jobs
    )


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(DAYS), random_jobs)
def test_shift_findings_equal_a_wall_clock_oracle(
    day: date, spans: list[tuple[int, int, int, AppointmentStatus]]
) -> None:
    """The engine never converts a job to local time; this oracle converts every one."""
    jobs = _random_day(day, spans)
    found = ConflictEngine().detect(jobs)
    oracle = set()
    for e in jobs:
        assert e.technician is not None
        zone = ZoneInfo(e.technician.timezone)
        start, end = e.job.start.astimezone(zone), e.job.end.astimezone(zone)
        inside = (
            start.weekday() in e.technician.work_days
            and start.date() == end.date()
            and time(7) <= start.time()
            and end.time() <= time(17)
        )
        if e.job.is_open and not inside:
            oracle.add(e.job.id)
    assert flagged(found, "shift") == oracle


# Few jobs and blocks on a coarse grid of one day, so blocks that just touch a job are common.
quarter_hours = st.integers(0, 24 * 4).map(lambda q: 15 * q)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.just(0), quarter_hours, st.integers(1, 16).map(lambda q: 15 * q),
                  st.sampled_from([OPEN, OPEN, OPEN, CLOSED])),
        max_size=8,
    ),
    st.lists(
        st.tuples(quarter_hours, st.integers(1, 16).map(lambda q: 15 * q),
                  st.sampled_from([None, None, "J0"])),  # some are our own events
        max_size=6,
    ),
)  # fmt: skip
def test_busy_findings_equal_a_pairwise_oracle(
    spans: list[tuple[int, int, int, AppointmentStatus]],
    raw_blocks: list[tuple[int, int, str | None]],
) -> None:
    jobs = _random_day(TUE, spans)
    midnight = at(TUE, 0, 0, ZONES[0])
    blocks = [
        BusyBlock(midnight + timedelta(minutes=s), midnight + timedelta(minutes=s + length), ours)
        for s, length, ours in raw_blocks
    ]
    found = ConflictEngine(busy={"T0": blocks}).detect(jobs)
    hits = Counter(f.appointment_ids[0] for f in found if f.kind == "busy")
    oracle = Counter(
        e.job.id
        for e in jobs
        for b in blocks
        if e.job.is_open and b.job_id is None and b.start < e.job.end and e.job.start < b.end
    )
    assert hits == oracle
