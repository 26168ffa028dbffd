"""Regenerate the sample day's CSV files (deterministic): python -m fieldsync.demo_data.build_sample

A Tuesday of an HVAC company in the Dallas-Fort Worth metro: 8 technicians, 67 jobs, with one
double-booking, one emergency, one cancellation and one tight drive across town.
"""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
DAY = datetime(2026, 12, 1, tzinfo=ZoneInfo("America/Chicago"))

JOB_TYPES = [
    # name, skills, setup minutes, default duration
    ("AC repair", "hvac;epa608", 10, 90),
    ("Furnace repair", "hvac;gas", 10, 90),
    ("Maintenance tune-up", "hvac", 5, 60),
    ("Heat pump install", "hvac;install;epa608", 20, 240),
    ("Duct cleaning", "ducts", 15, 120),
    ("Thermostat install", "hvac", 5, 45),
    ("Emergency no-heat", "hvac;gas", 5, 120),
    ("Water heater repair", "plumbing;gas", 10, 90),
    ("Refrigerant recharge", "hvac;epa608", 5, 60),
    ("Air quality assessment", "hvac", 5, 60),
]

MATERIALS = [
    ("CAP-45-5", "Dual run capacitor 45/5 uF", "each", 40),
    ("CONT-40A", "Contactor 40 A 2-pole", "each", 25),
    ("R410A-25", "R-410A refrigerant 25 lb", "cylinder", 6),
    ("R454B-20", "R-454B refrigerant 20 lb", "cylinder", 0),
    ("FLT-16x25", "Pleated filter 16x25x1 MERV 11", "each", 120),
    ("IGN-HSI", "Hot surface igniter", "each", 12),
    ("FLM-SNS", "Flame sensor", "each", 18),
    ("TSTAT-WIFI", "Wi-Fi thermostat", "each", 9),
    ("HP-3T", "Heat pump 3 ton 16 SEER2", "each", 2),
    ("AH-3T", "Air handler 3 ton", "each", 2),
    ("DUCT-TAPE", "Foil duct tape", "roll", 30),
    ("WH-THERMO", "Water heater thermocouple", "each", 10),
]

MATERIALS_FOR = {
    "AC repair": ["CAP-45-5", "CONT-40A"],
    "Furnace repair": ["IGN-HSI", "FLM-SNS"],
    "Maintenance tune-up": ["FLT-16x25"],
    "Heat pump install": ["HP-3T", "AH-3T", "R454B-20"],
    "Duct cleaning": ["DUCT-TAPE"],
    "Thermostat install": ["TSTAT-WIFI"],
    "Emergency no-heat": ["IGN-HSI", "FLM-SNS"],
    "Water heater repair": ["WH-THERMO"],
    "Refrigerant recharge": ["R410A-25"],
    "Air quality assessment": [],
}

TECHS = [
    # id, name, base city, lat, lon, skills
    ("T-101", "Maria Gonzalez", "Dallas", 32.7767, -96.7970, "hvac;epa608;gas;install"),
    ("T-102", "James Carter", "Plano", 33.0198, -96.6989, "hvac;gas;epa608"),
    ("T-103", "Priya Natarajan", "Irving", 32.8140, -96.9489, "hvac;epa608;ducts"),
    ("T-104", "Dwayne Brooks", "Arlington", 32.7357, -97.1081, "hvac;gas"),
    ("T-105", "Linh Tran", "Garland", 32.9126, -96.6389, "hvac;plumbing;gas"),
    ("T-106", "Kevin O'Neill", "Richardson", 32.9483, -96.7299, "hvac;epa608;install"),
    ("T-107", "Aisha Rahman", "Frisco", 33.1507, -96.8236, "hvac;ducts;epa608"),
    ("T-108", "Roberto Silva", "Mesquite", 32.7668, -96.5992, "hvac;gas;plumbing"),
]

STREETS = [
    "Elm St",
    "Oak Lawn Ave",
    "Preston Rd",
    "Belt Line Rd",
    "Main St",
    "Maple Ave",
    "Park Blvd",
    "Spring Valley Rd",
    "Coit Rd",
    "Legacy Dr",
    "Camp Wisdom Rd",
    "Beltline Rd",
    "Jupiter Rd",
    "Collins St",
    "Cooper St",
    "Story Rd",
    "MacArthur Blvd",
    "Plano Pkwy",
    "Town East Blvd",
    "Galloway Ave",
]
FIRST = [
    "Dana",
    "Chris",
    "Pat",
    "Morgan",
    "Alex",
    "Jordan",
    "Taylor",
    "Casey",
    "Jamie",
    "Riley",
    "Avery",
    "Quinn",
    "Drew",
    "Sam",
    "Robin",
    "Leslie",
]
LAST = [
    "Whitfield",
    "Nguyen",
    "Patel",
    "Johnson",
    "Garcia",
    "Okafor",
    "Kim",
    "Schmidt",
    "Hernandez",
    "Walker",
    "Lopez",
    "Murphy",
    "Singh",
    "Baker",
    "Reyes",
    "Cohen",
]
NOTES = [
    "Gate code 4411",
    "Dog in backyard",
    "Call 15 min before arrival",
    "Unit in attic",
    "Customer works from home, ring bell",
    "Park on street",
    "Second visit for this issue",
    "Warranty job: bring paperwork",
    "",
    "",
    "",
]
SOURCES = ["portal", "phone", "crm"]


def main() -> None:
    rng = random.Random(20261201)
    with (HERE / "job_types.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "required_skills", "setup_minutes", "default_duration_minutes"])
        w.writerows(JOB_TYPES)
    with (HERE / "materials.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sku", "name", "unit", "in_stock"])
        w.writerows(MATERIALS)
    with (HERE / "technicians.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "id",
                "name",
                "email",
                "phone",
                "timezone",
                "shift_start",
                "shift_end",
                "work_days",
                "skills",
                "region",
                "home_lat",
                "home_lon",
                "service_lat",
                "service_lon",
                "service_radius_km",
                "calendars",
            ]
        )
        for i, (tid, name, _city, lat, lon, skills) in enumerate(TECHS):
            email = name.lower().replace(" ", ".").replace("'", "") + "@acme-hvac.example"
            w.writerow(
                [
                    tid,
                    name,
                    email,
                    f"+1 214 555 01{i:02d}",
                    "America/Chicago",
                    "07:00",
                    "18:00",
                    "mon,tue,wed,thu,fri",
                    skills,
                    "dfw",
                    lat,
                    lon,
                    lat,
                    lon,
                    30,
                    f"ics:{tid}",
                ]
            )

    rows = []
    n = 0
    for tid, _name, city, lat, lon, skills in TECHS:
        have = set(skills.split(";"))
        possible = [
            t
            for t in JOB_TYPES
            if set(t[1].split(";")) <= have
            and t[0] not in ("Emergency no-heat", "Heat pump install")
        ]
        clock = DAY.replace(hour=7, minute=0)
        for _ in range(8):
            jt = rng.choice(possible)
            duration = min(jt[3], rng.choice([45, 45, 60, 60, 75]))
            if clock + timedelta(minutes=duration) > DAY.replace(hour=18):
                break
            n += 1
            jlat = lat + rng.uniform(-0.01, 0.01)
            jlon = lon + rng.uniform(-0.01, 0.01)
            rows.append(_row(rng, n, tid, jt[0], clock, duration, jlat, jlon, city))
            clock += timedelta(minutes=duration + 25)
    # The double-booking: Dwayne gets a second job on top of his 13:xx slot (booked by phone).
    dwayne = [r for r in rows if r["technician_id"] == "T-104"]
    clash = dwayne[len(dwayne) // 2]
    n += 1
    rows.append(
        _row(
            rng,
            n,
            "T-104",
            "Thermostat install",
            datetime.fromisoformat(clash["start"]) + timedelta(minutes=20),
            45,
            float(clash["lat"]) + 0.01,
            float(clash["lon"]) - 0.01,
            "Arlington",
            source="phone",
            notes="Booked by phone desk; customer insists on today",
        )
    )
    # The emergency: a family in Plano with no heat on a 2 °C morning.
    n += 1
    james_first = min(
        datetime.fromisoformat(r["start"]) for r in rows if r["technician_id"] == "T-102"
    )
    rows.append(
        _row(
            rng,
            n,
            "T-102",
            "Emergency no-heat",
            james_first - timedelta(minutes=60),
            45,
            33.0250,
            -96.7050,
            "Plano",
            priority="emergency",
            notes="No heat, infant at home; furnace lockout",
        )
    )
    # A tight drive: Aisha's last job is across the metro in Arlington.
    aisha_last = max(
        datetime.fromisoformat(r["end"]) for r in rows if r["technician_id"] == "T-107"
    )
    n += 1
    rows.append(
        _row(
            rng,
            n,
            "T-107",
            "Maintenance tune-up",
            aisha_last + timedelta(minutes=15),
            45,
            32.7200,
            -97.1200,
            "Arlington",
            notes="Customer moved; same plan, new address",
        )
    )
    # The cancellation: a customer called off Linh's third job.
    linh = [r for r in rows if r["technician_id"] == "T-105"]
    linh[2]["status"] = "canceled"
    linh[2]["notes"] = "Customer canceled by phone at 6:40"

    with (HERE / "appointments.csv").open("w", newline="") as f:
        dw = csv.DictWriter(f, fieldnames=list(rows[0]))
        dw.writeheader()
        dw.writerows(rows)
    print(f"{len(rows)} appointments for {len(TECHS)} technicians written to {HERE}")


def _row(
    rng: random.Random,
    n: int,
    tid: str,
    job_type: str,
    start: datetime,
    duration: int,
    lat: float,
    lon: float,
    city: str,
    *,
    source: str | None = None,
    priority: str = "normal",
    notes: str | None = None,
) -> dict[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    mats = MATERIALS_FOR[job_type]
    chosen = rng.sample(mats, k=min(len(mats), rng.randint(0, 2))) if mats else []
    if job_type == "Refrigerant recharge":
        chosen = ["R410A-25*2"]
    return {
        "source": source or rng.choice(SOURCES),
        "source_id": f"DFW-{20261201}-{n:03d}",
        "technician_id": tid,
        "status": "scheduled",
        "priority": priority,
        "job_type": job_type,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=duration)).isoformat(),
        "customer_name": f"{first} {last}",
        "customer_phone": f"+1 972 555 {rng.randint(1000, 9999)}",
        "customer_email": f"{first.lower()}.{last.lower()}@mail.example",
        "address": f"{rng.randint(100, 9999)} {rng.choice(STREETS)}, {city}, TX",
        "lat": f"{lat:.5f}",
        "lon": f"{lon:.5f}",
        "materials": ";".join(chosen),
        "notes": notes if notes is not None else rng.choice(NOTES),
    }


if __name__ == "__main__":
    main()
