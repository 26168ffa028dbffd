from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from fieldsync.conflicts import OverlapTravelDetector
from fieldsync.domain import AppointmentStatus, EnrichedJob, JobTypeView, JobView, Priority
from fieldsync.travel import GreatCircleTravel, haversine_km
from tests.factories import DAY
from tests.test_enrich import TECH


def job(
    i: int,
    start_min: int,
    length: int,
    lat: float = 32.78,
    lon: float = -96.80,
    status: AppointmentStatus = AppointmentStatus.SCHEDULED,
) -> EnrichedJob:
    start = DAY + timedelta(minutes=start_min)
    view = JobView(
        f"J-{i}",
        "portal",
        str(i),
        "T1",
        status,
        Priority.NORMAL,
        "AC repair",
        start,
        start + timedelta(minutes=length),
        "c",
        "",
        "",
        "addr",
        lat,
        lon,
        "",
        1,
    )
    return EnrichedJob(view, TECH, JobTypeView("AC repair", setup_minutes=10))


def test_haversine_dallas_to_fort_worth() -> None:
    assert 49 < haversine_km((32.7767, -96.7970), (32.7555, -97.3308)) < 51


def test_overlap_and_travel_are_found() -> None:
    detector = OverlapTravelDetector(GreatCircleTravel(speed_kmh=40, detour_factor=1.3))
    found = detector.detect(
        [
            job(1, 8 * 60, 60),
            job(2, 8 * 60 + 30, 60),  # overlaps job 1
            job(3, 10 * 60, 60, lat=32.75, lon=-97.33),  # 30 min after job 2 ends, 50 km away
            job(4, 9 * 60, 30, status=AppointmentStatus.CANCELED),  # canceled: ignored
        ]
    )
    kinds = sorted((f.kind, f.appointment_ids) for f in found)
    assert kinds == [("overlap", ("J-1", "J-2")), ("travel", ("J-2", "J-3"))]


def test_back_to_back_on_the_same_site_is_fine() -> None:
    assert OverlapTravelDetector().detect([job(1, 480, 60), job(2, 550, 60)]) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(5, 240)), max_size=25))
def test_sweep_finds_exactly_the_pairwise_overlaps(spans: list[tuple[int, int]]) -> None:
    jobs = [job(i, s, length) for i, (s, length) in enumerate(spans)]
    found = {
        frozenset(f.appointment_ids)
        for f in OverlapTravelDetector().detect(jobs)
        if f.kind == "overlap"
    }
    oracle = {
        frozenset((a.job.id, b.job.id))
        for i, a in enumerate(jobs)
        for b in jobs[i + 1 :]
        if a.job.start < b.job.end and b.job.start < a.job.end
    }
    assert found == oracle
