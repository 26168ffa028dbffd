"""Rescheduling options: exact answers on small hand-made days, and the invariants every
emergency or conflict option must keep on random days (DST days among them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import BusyBlock
from fieldsync.conflicts import ConflictFinding
from fieldsync.domain import (
    OPEN_STATUSES,
    AppointmentStatus,
    EnrichedJob,
    JobTypeView,
    JobView,
    Priority,
    TechnicianView,
)
from fieldsync.rescheduling import (
    MOVABLE_STATUSES,
    PRIORITY_RANK,
    LateJob,
    Move,
    Option,
    OptionKind,
    options_for_cancellation,
    options_for_conflict,
    options_for_delay,
    options_for_emergency,
)
from fieldsync.travel import GreatCircleTravel, TravelModel

CHI = ZoneInfo("America/Chicago")
NYC = ZoneInfo("America/New_York")
DAY = date(2026, 12, 1)  # a Tuesday
S = AppointmentStatus
P = Priority

TYPES = {
    "repair": JobTypeView("repair", frozenset({"hvac"}), setup_minutes=10),
    "emergency": JobTypeView("emergency", frozenset({"hvac"}), setup_minutes=10),
    "wiring": JobTypeView("wiring", frozenset({"electrical"}), setup_minutes=0),
    "quick": JobTypeView("quick"),
}


@dataclass(frozen=True)
class GridTravel:
    """Ten minutes per grid unit, Manhattan distance: exact numbers for hand-made days."""

    def minutes(self, a: tuple[float, float] | None, b: tuple[float, float] | None) -> float:
        if a is None or b is None:
            return 0.0
        return 10.0 * (abs(a[0] - b[0]) + abs(a[1] - b[1]))


GRID = GridTravel()


def at(h: int, m: int = 0, *, day: date = DAY, tz: ZoneInfo = CHI) -> datetime:
    return datetime.combine(day, time(h, m), tzinfo=tz)


def tech(
    tid: str,
    *,
    skills: Sequence[str] = ("hvac",),
    home: tuple[float, float] | None = (0.0, 0.0),
    tz: str = "America/Chicago",
    shift: tuple[time, time] = (time(8), time(17)),
    days: tuple[int, ...] = (0, 1, 2, 3, 4),
) -> TechnicianView:
    return TechnicianView(
        tid,
        f"Tech {tid}",
        tz,
        shift[0],
        shift[1],
        days,
        frozenset(skills),
        None if home is None else home[0],
        None if home is None else home[1],
        "dfw",
    )


def job(
    jid: str,
    tech_id: str | None,
    start: datetime,
    minutes: float,
    *,
    loc: tuple[float, float] | None = (0.0, 0.0),
    priority: Priority = P.NORMAL,
    status: AppointmentStatus = S.SCHEDULED,
    job_type: str = "repair",
) -> JobView:
    return JobView(
        jid,
        "crm",
        jid,
        tech_id,
        status,
        priority,
        job_type,
        start,
        start + timedelta(minutes=minutes),
        "Customer",
        "",
        "",
        "1 Main St",
        None if loc is None else loc[0],
        None if loc is None else loc[1],
        "",
        1,
    )


def utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


def brief(o: Option) -> tuple[Any, ...]:
    return (o.technician_id, o.job_id, o.start, o.end, o.travel_minutes, o.moves)


# --------------------------------------------------------------------------------------------
# Emergency
# --------------------------------------------------------------------------------------------

EMERGENCY = job("E", None, at(9), 60, loc=(1, 1), priority=P.EMERGENCY, job_type="emergency")


def emergency_day() -> dict[str, Any]:
    return {
        "technicians": [
            tech("A"),
            tech("B"),
            tech("C", skills=("electrical",), home=(1, 1)),  # unqualified, even if closest
            tech("D", home=(1, 1), shift=(time(10, 10), time(17))),
        ],
        "jobs": [
            job("a1", "A", at(9), 60, loc=(1, 0), status=S.IN_PROGRESS),
            job("a2", "A", at(10, 30), 60, loc=(2, 0)),
            job("a3", "A", at(13), 60, loc=(2, 0)),
            job("b1", "B", at(8), 90, loc=(3, 0), status=S.IN_PROGRESS),
            job("b0", "B", at(11), 60, loc=(3, 0), status=S.CANCELED),  # holds no time
        ],
        "job_types": TYPES,
        "busy": {
            "B": [BusyBlock(at(10), at(10, 30))],
            "A": [BusyBlock(at(10), at(12), job_id="a2")],  # our own event: not busy time
        },
        "travel": GRID,
        "now": at(9),
    }


def test_emergency_ranks_by_arrival_then_moves_then_travel() -> None:
    got = options_for_emergency(EMERGENCY, **emergency_day())
    assert [brief(o) for o in got] == [
        # D starts its shift at 10:10 on the site itself: setup only.
        ("D", "E", at(10, 20), at(11, 20), 0.0, ()),
        # A leaves a1 at 10:00, 10 min drive + 10 setup; a2 then needs 20 + 10 after 11:20.
        ("A", "E", at(10, 20), at(11, 20), 10.0, (Move("a2", at(10, 30), at(11, 50)),)),
        # B is free at 09:30 but its busy block 10:00-10:30 may hold neither drive nor work.
        ("B", "E", at(11, 10), at(12, 10), 30.0, ()),
        # A's later alternative that moves nothing (after a3, drive from (2,0)).
        ("A", "E", at(14, 30), at(15, 30), 20.0, ()),
    ]
    assert [o.rank for o in got] == [1, 2, 3, 4]
    assert all(o.kind is OptionKind.INSERT for o in got)
    assert got[1].score == (80.0, 1.0, 10.0)
    assert "a2 10:30->11:50" in got[1].reason
    assert options_for_emergency(EMERGENCY, **emergency_day(), limit=2) == got[:2]


def test_emergency_never_bumps_pinned_higher_priority_or_started_jobs() -> None:
    day = emergency_day()
    got = options_for_emergency(EMERGENCY, **day, pinned=("a2",))
    a = [brief(o) for o in got if o.technician_id == "A"]
    # a2 stays: A only gets in after it, pushing a3 (30 min drive+setup back to (2,0)).
    assert a == [
        ("A", "E", at(12), at(13), 20.0, (Move("a3", at(13), at(13, 30)),)),
        ("A", "E", at(14, 30), at(15, 30), 20.0, ()),
    ]
    high = replace(EMERGENCY, priority=P.NORMAL)  # a2 is NORMAL too: not lower, not bumped
    assert [brief(o)[:3] for o in options_for_emergency(high, **day) if o.technician_id == "A"] == [
        ("A", "E", at(14, 30))
    ]


def test_emergency_reads_shift_and_working_days_in_the_technicians_own_zone() -> None:
    la = tech("LA", tz="America/Los_Angeles", home=(1, 1))
    weekend = tech("W", home=(1, 1), days=(5, 6))
    got = options_for_emergency(
        EMERGENCY,
        technicians=[la, weekend],
        jobs=[],
        job_types=TYPES,
        travel=GRID,
        now=at(9),  # 07:00 in Los Angeles, before that shift starts at 08:00 local
    )
    la_zone = ZoneInfo("America/Los_Angeles")
    assert [brief(o) for o in got] == [
        ("LA", "E", at(8, 10, tz=la_zone), at(9, 10, tz=la_zone), 0.0, ())
    ]
    assert got[0].start.tzinfo == la_zone  # shown on the technician's own clock


def test_emergency_accepts_enriched_jobs_and_starts_from_a_finished_jobs_site() -> None:
    finished = job("done", "A", at(8), 30, loc=(4, 1), status=S.COMPLETED)
    enriched = [EnrichedJob(finished, None, TYPES["repair"])]
    got = options_for_emergency(
        EMERGENCY, technicians=[tech("A")], jobs=enriched, job_types={}, travel=GRID, now=at(9)
    )
    # The emergency type is unknown here (no skills, no setup); the drive is from (4,1).
    assert [brief(o) for o in got] == [("A", "E", at(9, 30), at(10, 30), 30.0, ())]
    assert "from done" in got[0].reason


@pytest.mark.parametrize(
    ("tz", "day", "shift", "now", "fits", "first_start"),
    [
        # Spring forward: 00:00-08:00 on 2026-03-08 is 7 real hours.
        (NYC, date(2026, 3, 8), (time(0), time(8)), datetime(2026, 3, 8, 5, tzinfo=UTC), 420,
         datetime(2026, 3, 8, 5, tzinfo=UTC)),
        # Fall back: 00:00-08:00 on 2026-11-01 is 9 real hours.
        (NYC, date(2026, 11, 1), (time(0), time(8)), datetime(2026, 11, 1, 4, tzinfo=UTC), 540,
         datetime(2026, 11, 1, 4, tzinfo=UTC)),
        # Overnight shift across spring forward: 22:00 EST to 06:00 EDT is 7 hours.
        (NYC, date(2026, 3, 7), (time(22), time(6)), datetime(2026, 3, 8, 3, tzinfo=UTC), 420,
         datetime(2026, 3, 8, 3, tzinfo=UTC)),
        # A day shift on the spring-forward day starts at 07:00 EDT = 11:00 UTC (not 12:00).
        (NYC, date(2026, 3, 8), (time(7), time(17)), datetime(2026, 3, 8, 9, tzinfo=UTC), 600,
         datetime(2026, 3, 8, 11, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_dst_days_give_the_real_shift_length(
    tz: ZoneInfo,
    day: date,
    shift: tuple[time, time],
    now: datetime,
    fits: int,
    first_start: datetime,
) -> None:
    night = tech("N", tz=tz.key, shift=shift, days=(0, 1, 2, 3, 4, 5, 6), home=None)

    def ask(minutes: int) -> list[Option]:
        e = job("E", None, now, minutes, loc=None, priority=P.EMERGENCY, job_type="quick")
        return options_for_emergency(
            e, technicians=[night], jobs=[], job_types=TYPES, travel=GRID, now=now
        )

    fitted = ask(fits)
    assert [o.start for o in fitted] == [first_start]
    # In UTC: Python subtracts datetimes of one zone on the wall clock, DST ignored.
    assert utc(fitted[0].end) - utc(fitted[0].start) == timedelta(minutes=fits)
    assert ask(fits + 5) == []


def test_durations_are_elapsed_time_across_dst() -> None:
    # 01:30-03:30 on the spring-forward night is one hour of work, not two.
    e = replace(
        EMERGENCY,
        start=datetime(2026, 3, 8, 1, 30, tzinfo=NYC),
        end=datetime(2026, 3, 8, 3, 30, tzinfo=NYC),
        job_type="quick",
    )
    ny = tech("N", tz=NYC.key, home=None, days=(6,), shift=(time(7), time(8, 30)))
    now = datetime(2026, 3, 8, 7, tzinfo=NYC)
    got = options_for_emergency(e, technicians=[ny], jobs=[], job_types=TYPES, now=now)
    assert [(o.start, utc(o.end) - utc(o.start)) for o in got] == [(now, timedelta(hours=1))]


def test_busy_time_may_hold_neither_the_drive_nor_the_job() -> None:
    # Free at 09:00, 30 min drive + 10 setup; a dentist visit 09:10-09:20 sits in the drive.
    day = emergency_day()
    day["technicians"] = [tech("B")]
    day["jobs"] = [job("b1", "B", at(8), 60, loc=(3, 0), status=S.IN_PROGRESS)]
    day["busy"] = {"B": [BusyBlock(at(9, 10), at(9, 20))]}
    got = options_for_emergency(EMERGENCY, **day)
    assert [brief(o) for o in got] == [("B", "E", at(10), at(11), 30.0, ())]


# --------------------------------------------------------------------------------------------
# Cancellation
# --------------------------------------------------------------------------------------------


def test_cancellation_offers_waiting_then_pulled_forward_then_other_technicians_jobs() -> None:
    canceled = job("c", "A", at(9, 30), 90, loc=(1, 0), status=S.CANCELED)
    day = [
        job("a1", "A", at(8), 60, loc=(1, 0), status=S.IN_PROGRESS),
        canceled,
        job("a3", "A", at(11, 30), 60, loc=(1, 0)),
        job("a4", "A", at(14), 60, loc=(1, 0)),
        job("b1", "B", at(10), 60, loc=(5, 0)),  # 40 min away: would make A late for a3
        job("b2", "B", at(13), 30, loc=(2, 0)),
        job("b3", "B", at(15), 30, loc=(1, 0), status=S.EN_ROUTE),  # not movable
    ]
    waiting = [
        job("w1", None, at(10), 60, loc=(2, 0)),
        job("w2", None, at(13), 60, loc=(1, 0), priority=P.HIGH),
        job("w3", None, at(10), 150, loc=(1, 0)),  # longer than the freed time
        job("w4", None, at(10), 30, loc=(1, 0), job_type="wiring"),  # A lacks the skill
    ]
    got = options_for_cancellation(
        canceled,
        waiting,
        technicians=[tech("A"), tech("B")],
        jobs=day,
        job_types=TYPES,
        travel=GRID,
        now=at(8, 30),
    )
    assert got.freed is not None
    assert (got.freed.technician_id, got.freed.start, got.freed.end) == ("A", at(9), at(11, 30))
    assert got.freed.minutes == 150
    assert [(o.kind, o.job_id, o.start, o.end, o.travel_minutes) for o in got.options] == [
        (OptionKind.ASSIGN, "w2", at(9, 10), at(10, 10), 0.0),  # HIGH first
        (OptionKind.ASSIGN, "w1", at(9, 20), at(10, 20), 10.0),
        (OptionKind.PULL_FORWARD, "a3", at(9, 10), at(10, 10), 0.0),
        (OptionKind.PULL_FORWARD, "a4", at(9, 10), at(10, 10), 0.0),
        (OptionKind.REASSIGN, "b2", at(9, 20), at(9, 50), 10.0),
    ]
    assert got.options[2].score == (1.0, -1.0, 140.0, 0.0)
    assert (got.options[4].from_technician_id, got.options[4].from_start) == ("B", at(13))
    assert all(o.technician_id == "A" and o.moves == () for o in got.options)


def test_cancellation_in_the_past_frees_nothing() -> None:
    canceled = job("c", "A", at(9), 60, status=S.CANCELED)
    got = options_for_cancellation(
        canceled,
        [job("w", None, at(9), 30)],
        technicians=[tech("A")],
        jobs=[canceled],
        job_types=TYPES,
        travel=GRID,
        now=at(10, 30),
    )
    assert got.freed is None and got.options == []


# --------------------------------------------------------------------------------------------
# Delay
# --------------------------------------------------------------------------------------------


def delay_day() -> tuple[JobView, dict[str, Any]]:
    late = job("j1", "A", at(9), 60, loc=(1, 0), status=S.DELAYED)
    return late, {
        "technicians": [
            tech("A"),
            tech("B", home=(2, 0)),
            tech("C", home=(5, 0)),
            tech("D", skills=("electrical",), home=(2, 0)),
        ],
        "jobs": [
            late,
            job("j2", "A", at(10, 30), 60, loc=(2, 0)),
            job("j3", "A", at(12), 60, loc=(2, 0)),
            job("j4", "A", at(15), 60, loc=(2, 0)),
        ],
        "job_types": TYPES,
        "travel": GRID,
        "now": at(9),
    }


def test_delay_reports_the_knock_on_and_who_can_take_the_late_jobs() -> None:
    late, day = delay_day()
    got = options_for_delay(late, at(9, 45), **day)
    # j1 now ends 10:45; j2 needs 10 min drive + 10 setup; j3 10 setup after j2; j4 is clear.
    assert got.knock_on == (
        LateJob("j2", at(10, 30), at(11, 5), 35.0, False),
        LateJob("j3", at(12), at(12, 15), 15.0, False),
    )
    assert [
        (o.job_id, o.technician_id, o.start, o.travel_minutes, o.moves, o.score)
        for o in got.options
    ] == [
        # Moving j2 away also clears j3: no lateness left at all.
        ("j2", "B", at(10, 30), 0.0, (), (0.0, 0.0, 0.0)),
        ("j2", "C", at(10, 30), 30.0, (), (0.0, 0.0, 30.0)),
        # Moving j3 leaves j2 35 min late.
        ("j3", "B", at(12), 0.0, (Move("j2", at(10, 30), at(11, 5)),), (35.0, 1.0, 0.0)),
        ("j3", "C", at(12), 30.0, (Move("j2", at(10, 30), at(11, 5)),), (35.0, 1.0, 30.0)),
    ]
    assert all(o.kind is OptionKind.REASSIGN and o.from_technician_id == "A" for o in got.options)


def test_delay_flags_jobs_pushed_past_the_shift_end() -> None:
    late, day = delay_day()
    got = options_for_delay(late, at(14, 30), **day, pinned=("j2", "j3", "j4"))
    assert [(j.job_id, j.new_start, j.past_shift_end) for j in got.knock_on] == [
        ("j2", at(15, 50), False),
        ("j3", at(17), True),
        ("j4", at(18, 10), True),
    ]
    assert got.options == []  # every late job is pinned


# --------------------------------------------------------------------------------------------
# Conflict
# --------------------------------------------------------------------------------------------


def test_conflict_options_shift_later_or_reassign() -> None:
    jobs = [
        job("a1", "A", at(9), 60, loc=(1, 0)),
        job("a2", "A", at(9, 30), 60, loc=(1, 0)),
        job("a3", "A", at(11), 60, loc=(1, 0)),
        job("a4", "A", at(13), 60, loc=(1, 0), priority=P.HIGH),
    ]
    finding = ConflictFinding("A", "overlap", "critical", ("a1", "a2"), "a1 overlaps a2")
    got = options_for_conflict(
        finding,
        technicians=[tech("A"), tech("B", home=(1, 0)), tech("C", home=(3, 0))],
        jobs=jobs,
        job_types=TYPES,
        travel=GRID,
        now=at(8),
        limit=10,
    )
    assert [(o.kind, o.job_id, o.technician_id, o.start, o.moves, o.score) for o in got] == [
        (OptionKind.REASSIGN, "a1", "B", at(9), (), (0.0, 0.0, 0.0)),
        (OptionKind.REASSIGN, "a2", "B", at(9, 30), (), (0.0, 0.0, 0.0)),
        (OptionKind.REASSIGN, "a1", "C", at(9), (), (0.0, 0.0, 20.0)),
        (OptionKind.REASSIGN, "a2", "C", at(9, 30), (), (0.0, 0.0, 20.0)),
        # a1 one step later, ahead of a2, which it pushes, and a2 pushes a3.
        (
            OptionKind.SHIFT_LATER,
            "a1",
            "A",
            at(9, 5),
            (Move("a2", at(9, 30), at(10, 15)), Move("a3", at(11), at(11, 25))),
            (5.0, 2.0, 10.0),
        ),
        # a2 right after a1, pushing a3 (same priority) but never the HIGH a4.
        (
            OptionKind.SHIFT_LATER,
            "a2",
            "A",
            at(10, 10),
            (Move("a3", at(11), at(11, 20)),),
            (40.0, 1.0, 0.0),
        ),
        (
            OptionKind.SHIFT_LATER,
            "a1",
            "A",
            at(10, 40),
            (Move("a3", at(11), at(11, 50)),),
            (100.0, 1.0, 0.0),
        ),
        (OptionKind.SHIFT_LATER, "a2", "A", at(14, 10), (), (280.0, 0.0, 0.0)),
        (OptionKind.SHIFT_LATER, "a1", "A", at(14, 10), (), (310.0, 0.0, 0.0)),
    ]
    assert [o.rank for o in got] == list(range(1, 10))
    short = options_for_conflict(
        finding,
        technicians=[tech("A"), tech("B", home=(1, 0)), tech("C", home=(3, 0))],
        jobs=jobs,
        job_types=TYPES,
        travel=GRID,
        now=at(8),
    )
    assert short == got[:5]


# --------------------------------------------------------------------------------------------
# Properties on random days
# --------------------------------------------------------------------------------------------

ZONES = ["America/Chicago", "America/New_York", "America/Los_Angeles"]
DAYS = [date(2026, 3, 8), date(2026, 11, 1), date(2026, 12, 1)]  # spring fwd, fall back, plain
GC = GreatCircleTravel()
PROP_TYPES = {
    "hvac": JobTypeView("hvac", frozenset({"hvac"}), setup_minutes=10),
    "elec": JobTypeView("elec", frozenset({"electrical"}), setup_minutes=5),
    "both": JobTypeView("both", frozenset({"hvac", "electrical"}), setup_minutes=0),
}


def _site(i: int) -> tuple[float, float]:
    return 32.7 + (i % 5) * 0.06, -96.8 - (i // 5) * 0.06


@dataclass
class RandomDay:
    techs: list[TechnicianView]
    jobs: list[JobView]
    busy: dict[str, list[BusyBlock]]
    now: datetime
    day: date


@st.composite
def random_days(draw: st.DrawFn) -> RandomDay:
    day = draw(st.sampled_from(DAYS))
    techs: list[TechnicianView] = []
    jobs: list[JobView] = []
    busy: dict[str, list[BusyBlock]] = {}
    for t in range(draw(st.integers(1, 4))):
        zone = ZoneInfo(draw(st.sampled_from(ZONES)))
        s_hour = draw(st.integers(5, 9))
        e_hour = draw(st.integers(14, 20))
        skills = draw(st.sampled_from([("hvac",), ("electrical",), ("hvac", "electrical")]))
        tid = f"T{t}"
        techs.append(
            TechnicianView(
                tid,
                tid,
                zone.key,
                time(s_hour),
                time(e_hour),
                tuple(d for d in range(7) if draw(st.booleans()) or d == day.weekday()),
                frozenset(skills),
                *_site(draw(st.integers(0, 24))),
                "r",
            )
        )
        # Built in UTC: wall-clock arithmetic on an aware datetime would walk into the DST gap.
        clock = datetime.combine(day, time(s_hour), tzinfo=zone).astimezone(UTC)
        for j in range(draw(st.integers(0, 8))):
            clock += timedelta(minutes=draw(st.integers(0, 90)))
            minutes = draw(st.integers(15, 120))
            jobs.append(
                job(
                    f"{tid}-{j}",
                    tid,
                    clock,
                    minutes,
                    loc=_site(draw(st.integers(0, 24))),
                    priority=draw(st.sampled_from(list(Priority))),
                    status=draw(st.sampled_from([S.SCHEDULED, S.BOOKED, S.EN_ROUTE, S.DELAYED])),
                    job_type=draw(st.sampled_from(sorted(PROP_TYPES))),
                )
            )
            clock += timedelta(minutes=minutes)
        base = datetime.combine(day, time(s_hour), tzinfo=zone).astimezone(UTC)
        busy[tid] = [
            BusyBlock(
                base + timedelta(minutes=(o := draw(st.integers(-60, 720)))),
                base + timedelta(minutes=o + draw(st.integers(5, 120))),
                draw(st.sampled_from([None, None, "ours"])),
            )
            for _ in range(draw(st.integers(0, 3)))
        ]
    first = datetime.combine(day, techs[0].shift_start, tzinfo=ZoneInfo(techs[0].timezone))
    now = first.astimezone(UTC) + timedelta(minutes=draw(st.integers(-120, 480)))
    return RandomDay(techs, jobs, busy, now, day)


def _setup(v: JobView) -> float:
    return PROP_TYPES[v.job_type].setup_minutes


def _pt(v: JobView) -> tuple[float, float] | None:
    return None if v.lat is None or v.lon is None else (v.lat, v.lon)


def check_placement(
    o: Option,
    placed: JobView,
    rd: RandomDay,
    *,
    travel: TravelModel,
    bump_below: int | None,
) -> None:
    """Every rule an option must keep, checked from scratch against the raw day. Arithmetic
    is in UTC: options come on the technician's clock, where Python subtracts wall times."""
    t = {x.id: x for x in rd.techs}[o.technician_id]
    zone = ZoneInfo(t.timezone)
    jt = PROP_TYPES[placed.job_type]
    assert jt.required_skills <= t.skills, "unqualified technician"
    start, end = utc(o.start), utc(o.end)
    assert end - start == utc(placed.end) - utc(placed.start)
    assert start >= rd.now

    def inside_shift(s: datetime, e: datetime) -> bool:
        ls, le = s.astimezone(zone), e.astimezone(zone)
        return (
            ls.weekday() in t.work_days
            and le.date() == ls.date()
            and ls.time() >= t.shift_start
            and le.time() <= t.shift_end
        )

    external = [b for b in rd.busy.get(t.id, []) if b.job_id is None]

    def on_busy(s: datetime, e: datetime) -> bool:
        return any(b.start < e and s < b.end for b in external)

    assert inside_shift(start, end), "outside the shift"
    assert not on_busy(start, end), "lands on a busy block"

    mine = {
        v.id: v
        for v in rd.jobs
        if v.technician_id == t.id and v.status in OPEN_STATUSES and v.id != placed.id
    }
    final = dict(mine)
    for m in o.moves:
        old = mine[m.job_id]
        assert utc(m.old_start) == old.start
        assert utc(m.new_start) > old.start, "moves only later"
        assert old.status in MOVABLE_STATUSES and old.start > rd.now
        assert bump_below is not None and PRIORITY_RANK[old.priority] < bump_below
        moved = replace(old, start=utc(m.new_start), end=utc(m.new_start) + (old.end - old.start))
        assert inside_shift(moved.start, moved.end) and not on_busy(moved.start, moved.end)
        final[m.job_id] = moved
    new = replace(placed, start=start, end=end)
    moved_ids = {m.job_id for m in o.moves}
    for v in final.values():
        assert not (v.start < new.end and new.start < v.end), f"overlaps {v.id}, not moved"
        if v.id in moved_ids:
            for w in final.values():
                if w.id != v.id:
                    assert not (v.start < w.end and w.start < v.end), f"{v.id} onto {w.id}"

    # Drive + setup before the job: from the last job ending by then, else from home at the
    # shift start; and never before now.
    local_day = start.astimezone(zone).date()
    shift_start = utc(datetime.combine(local_day, t.shift_start, tzinfo=zone))
    before = [v for v in final.values() if shift_start < v.end <= new.start]
    origin: tuple[float, float] | None
    if before:
        prev = max(before, key=lambda v: v.end)
        free_at, origin = max(prev.end, rd.now), _pt(prev)
    else:
        free_at, origin = max(shift_start, rd.now), (t.home_lat or 0.0, t.home_lon or 0.0)
    need = travel.minutes(origin, _pt(new)) + jt.setup_minutes
    assert (new.start - free_at).total_seconds() / 60 >= need - 1e-6, "no time to get there"
    assert not on_busy(new.start - timedelta(minutes=need), new.start), "drives through busy"
    assert o.travel_minutes == pytest.approx(travel.minutes(origin, _pt(new)))

    # And drive + setup before whatever follows, for the job and everything it pushed.
    chain = sorted([new, *final.values()], key=lambda v: v.start)
    for a, b in pairwise(chain):
        if a.id == new.id or a.id in moved_ids:
            gap = (b.start - a.end).total_seconds() / 60
            lead = travel.minutes(_pt(a), _pt(b)) + _setup(b)
            assert gap >= lead - 1e-6, "gap after"
            if b.id in moved_ids:
                lead_in = b.start - timedelta(minutes=lead)
                assert not on_busy(lead_in, b.start), "pushed job drives through busy"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rd=random_days(),
    minutes=st.integers(10, 240),
    site=st.integers(0, 24),
    kind=st.sampled_from(sorted(PROP_TYPES)),
    priority=st.sampled_from([P.NORMAL, P.HIGH, P.EMERGENCY, P.EMERGENCY]),
)
def test_emergency_options_keep_every_rule(
    rd: RandomDay, minutes: int, site: int, kind: str, priority: Priority
) -> None:
    e = job("E", None, rd.now, minutes, loc=_site(site), priority=priority, job_type=kind)
    got = options_for_emergency(
        e,
        technicians=rd.techs,
        jobs=rd.jobs,
        job_types=PROP_TYPES,
        busy=rd.busy,
        travel=GC,
        now=rd.now,
        limit=20,
    )
    for o in got:
        check_placement(o, e, rd, travel=GC, bump_below=PRIORITY_RANK[priority])
    assert [o.score for o in got] == sorted(o.score for o in got)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rd=random_days(), pick=st.tuples(st.integers(0, 50), st.integers(0, 50)))
def test_conflict_options_keep_every_rule(rd: RandomDay, pick: tuple[int, int]) -> None:
    if len(rd.jobs) < 2:
        return
    a, b = rd.jobs[pick[0] % len(rd.jobs)], rd.jobs[pick[1] % len(rd.jobs)]
    assert a.technician_id is not None
    finding = ConflictFinding(a.technician_id, "overlap", "critical", (a.id, b.id), "")
    got = options_for_conflict(
        finding,
        technicians=rd.techs,
        jobs=rd.jobs,
        job_types=PROP_TYPES,
        busy=rd.busy,
        travel=GC,
        now=rd.now,
        limit=20,
    )
    by_id = {v.id: v for v in rd.jobs}
    for o in got:
        placed = by_id[o.job_id]
        assert placed.status in MOVABLE_STATUSES
        if o.kind is OptionKind.SHIFT_LATER:
            assert o.technician_id == placed.technician_id and o.start > placed.start
            bump = PRIORITY_RANK[placed.priority] + 1
            check_placement(o, placed, rd, travel=GC, bump_below=bump)
        else:
            assert o.kind is OptionKind.REASSIGN and o.moves == ()
            assert o.technician_id != placed.technician_id and o.start >= placed.start
            check_placement(o, placed, rd, travel=GC, bump_below=None)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        options_for_emergency(
            EMERGENCY, technicians=[], jobs=[], job_types=TYPES, now=datetime(2026, 12, 1, 9)
        )
