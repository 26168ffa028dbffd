from __future__ import annotations

from datetime import time, timedelta

from fieldsync.domain import (
    AppointmentStatus,
    BindingView,
    JobTypeView,
    JobView,
    MaterialLine,
    Priority,
    TechnicianView,
)
from fieldsync.enrich import enrich
from fieldsync.event_content import event_for
from fieldsync.travel import GreatCircleTravel
from tests.factories import DAY

TECH = TechnicianView(
    "T1",
    "Maria",
    "America/Chicago",
    time(7),
    time(17),
    (0, 1, 2, 3, 4),
    frozenset({"hvac"}),
    32.78,
    -96.80,
    "dfw",
    bindings=(BindingView(1, "T1", "memory", "cal"),),
)


def view(i: int, hour: int, lat: float, lon: float, materials=()) -> JobView:
    start = DAY + timedelta(hours=hour)
    return JobView(
        f"J-{i}",
        "crm",
        f"C-{i}",
        "T1",
        AppointmentStatus.SCHEDULED,
        Priority.EMERGENCY if i == 2 else Priority.NORMAL,
        "AC repair",
        start,
        start + timedelta(minutes=90),
        "Dana Whitfield",
        "+1 214 555 0100",
        "dana@example.com",
        "1201 Elm St, Dallas",
        lat,
        lon,
        "Gate code 4411",
        1,
        materials,
    )


def test_enrich_joins_names_stock_and_travel() -> None:
    jobs = [
        view(1, 8, 32.78, -96.80, (MaterialLine("CAP", 1), MaterialLine("R410A", 3))),
        view(2, 11, 32.75, -97.33),
    ]
    catalog = {"CAP": ("Run capacitor", 10.0), "R410A": ("R-410A 25 lb", 2.0)}
    out = enrich(
        jobs,
        {"T1": TECH},
        {"AC repair": JobTypeView("AC repair", setup_minutes=10)},
        catalog,
        GreatCircleTravel(),
    )
    first, second = out
    assert first.missing_materials == ("R410A",)
    assert first.job.materials[0].name == "Run capacitor"
    assert first.travel_minutes_from_previous == 0.0  # starts at the home base
    assert second.travel_minutes_from_previous is not None
    assert 90 < second.travel_minutes_from_previous < 105  # ~50 km at 40 km/h x 1.3

    event = event_for(second)
    assert event.summary.startswith("EMERGENCY: AC repair - Dana Whitfield")
    assert event.timezone == "America/Chicago"
    for text in ("1201 Elm St", "Duration: 90 min", "+1 214 555 0100", "Gate code 4411"):
        assert text in event.description
    assert "R-410A 25 lb x3" in event_for(first).description
    assert "Materials out of stock: R410A" in event_for(first).description
