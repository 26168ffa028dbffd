"""File imports on both backends: validation, dead letters, idempotent re-imports, bindings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fieldsync.importer import ImportFileError, ImportReport, RowError, import_file
from fieldsync.inputs import default_appointment_id
from fieldsync.store.db import session_scope
from fieldsync.store.tables import (
    Appointment,
    CalendarBinding,
    DeadLetter,
    JobType,
    Material,
    Technician,
)

TECHNICIANS_CSV = """\
id,name,email,phone,timezone,shift_start,shift_end,work_days,skills,region,home_lat,home_lon,calendars
T-001,Alice Moreau,alice@acme.com,+49 30 1234,Europe/Berlin,08:00,17:00,"mon,tue,wed,thu,fri",hvac;electrical,NA,52.52,13.405,ics:T-001;google:alice@acme.com#google-acme
T-002,Bob Stone,,,America/Chicago,07:30,16:00,"0,1,2,3",plumbing,,,,outlook:bob@acme.com
"""  # noqa: E501 (a spreadsheet row is as wide as it is)

APPOINTMENTS_CSV = """\
source,source_id,technician_id,status,priority,job_type,start,end,duration_minutes,timezone,customer_name,customer_phone,address,lat,lon,materials,notes
portal,P-100,T-001,booked,high,AC repair,2026-05-04T09:00:00+02:00,2026-05-04T10:30:00+02:00,,,Carla Diaz,555-0100,Hauptstr. 1 Berlin,52.5,13.4,FILTER-20*2;COIL,Ring twice
crm,C-7,T-002,scheduled,normal,Drain cleaning,2026-05-04 08:00,,60,America/Chicago,Dan Wu,,12 Elm St,,,,
portal,P-101,,booked,low,Inspection,2026-05-05T14:00:00Z,,45,,Eve Park,,3 Oak Ave,,,,
"""  # noqa: E501


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def import_in_own_session(db_url: str, kind: str, path: Path) -> ImportReport:
    """A separate unit of work per import: the second import reads what the first committed."""
    with session_scope(db_url) as session:
        return import_file(session, kind, path)  # type: ignore[arg-type]


def counts(report: ImportReport) -> tuple[int, int, int, int]:
    return report.created, report.updated, report.unchanged, report.rejected


# --- good files ---------------------------------------------------------------------------


def test_technicians_csv(session: Session, tmp_path: Path) -> None:
    report = import_file(session, "technicians", write(tmp_path, "techs.csv", TECHNICIANS_CSV))

    assert counts(report) == (2, 0, 0, 0), report.format()
    assert report.errors == [] and report.warnings == []
    alice = session.get(Technician, "T-001")
    assert alice is not None
    assert alice.timezone == "Europe/Berlin"
    assert (alice.shift_start, alice.shift_end) == (time(8), time(17))
    assert alice.work_days == [0, 1, 2, 3, 4]
    assert alice.skills == ["hvac", "electrical"]
    assert alice.region == "NA"  # pandas would have read this as a missing value
    assert (alice.home_lat, alice.home_lon) == (52.52, 13.405)
    assert {(b.platform, b.calendar_id, b.credentials_block, b.active) for b in alice.bindings} == {
        ("ics", "T-001", None, True),
        ("google", "alice@acme.com", "google-acme", True),
    }
    bob = session.get(Technician, "T-002")
    assert bob is not None
    assert bob.work_days == [0, 1, 2, 3]
    assert bob.email == "" and bob.home_lat is None


def test_appointments_csv_times_and_materials(session: Session, tmp_path: Path) -> None:
    import_file(session, "technicians", write(tmp_path, "techs.csv", TECHNICIANS_CSV))
    report = import_file(session, "appointments", write(tmp_path, "jobs.csv", APPOINTMENTS_CSV))
    session.flush()
    session.expire_all()  # read back what the database holds, not the objects we built

    assert counts(report) == (3, 0, 0, 0), report.format()
    ac = session.get(Appointment, default_appointment_id("portal", "P-100"))
    assert ac is not None
    assert ac.start == datetime(2026, 5, 4, 7, 0, tzinfo=UTC)
    assert ac.end == datetime(2026, 5, 4, 8, 30, tzinfo=UTC)
    assert ac.duration_minutes == 90
    assert ac.priority == "high" and ac.status == "booked" and ac.version == 1
    assert ac.materials == [{"sku": "FILTER-20", "quantity": 2.0}, {"sku": "COIL", "quantity": 1.0}]
    assert ac.notes == "Ring twice"

    drain = session.scalars(select(Appointment).where(Appointment.source_id == "C-7")).one()
    # 08:00 in Chicago on a May date is CDT, UTC-5.
    assert drain.start == datetime(2026, 5, 4, 13, 0, tzinfo=UTC)
    assert drain.end == datetime(2026, 5, 4, 14, 0, tzinfo=UTC)

    unassigned = session.scalars(select(Appointment).where(Appointment.source_id == "P-101")).one()
    assert unassigned.technician_id is None
    assert unassigned.id == "J-" + unassigned.id[2:] and len(unassigned.id) == 18


def test_json_imports_list_and_wrapped(session: Session, tmp_path: Path) -> None:
    technicians = {
        "technicians": [
            {
                "id": "T-010",
                "name": "Cleo",
                "timezone": "Europe/London",
                "shift_start": "09:00",
                "shift_end": "18:00",
                "work_days": ["mon", "wed", "fri"],
                "skills": ["gas"],
                "calendars": [
                    {"platform": "caldav", "calendar_id": "https://dav.example/cleo/"},
                    "slack:C123#slack-main",
                ],
            }
        ]
    }
    appointments = [
        {
            "id": "A-1",
            "source": "hubspot",
            "source_id": 98765,  # CRMs hand out numeric ids
            "technician_id": "T-010",
            "job_type": "Boiler service",
            "start": "2026-06-01T10:00:00+01:00",
            "duration_minutes": 120,
            "customer_name": "Finn",
            "address": "1 Queen St",
            "lat": 51.5,
            "lon": -0.12,
            "materials": [{"sku": "VALVE", "quantity": 3}],
        }
    ]
    materials = [{"sku": "VALVE", "name": "Valve 15mm", "unit": "each", "in_stock": 12}]
    job_types = {"job_types": [{"name": "Boiler service", "required_skills": ["gas"]}]}

    results = [
        import_file(session, "technicians", write(tmp_path, "t.json", json.dumps(technicians))),
        import_file(session, "materials", write(tmp_path, "m.json", json.dumps(materials))),
        import_file(session, "job_types", write(tmp_path, "j.json", json.dumps(job_types))),
        import_file(session, "appointments", write(tmp_path, "a.json", json.dumps(appointments))),
    ]

    assert [counts(r) for r in results] == [(1, 0, 0, 0)] * 4, [r.format() for r in results]
    cleo = session.get(Technician, "T-010")
    assert cleo is not None and cleo.work_days == [0, 2, 4]
    assert sorted((b.platform, b.credentials_block) for b in cleo.bindings) == [
        ("caldav", None),
        ("slack", "slack-main"),
    ]
    job = session.get(Appointment, "A-1")
    assert job is not None
    assert job.source_id == "98765"
    assert job.end == datetime(2026, 6, 1, 11, 0, tzinfo=UTC)
    assert job.materials == [{"sku": "VALVE", "quantity": 3.0}]
    valve = session.get(Material, "VALVE")
    assert valve is not None and valve.in_stock == 12
    boiler = session.get(JobType, "Boiler service")
    assert boiler is not None
    assert boiler.required_skills == ["gas"] and boiler.default_duration_minutes == 60


def test_materials_and_job_types_csv(session: Session, tmp_path: Path) -> None:
    materials = "sku,name,unit,in_stock\nFILTER-20,Air filter 20in,each,14\nPIPE,Copper pipe,m,\n"
    job_types = (
        "name,required_skills,setup_minutes,default_duration_minutes\n"
        "AC repair,hvac;electrical,15,90\nInspection,,,\n"
    )
    m = import_file(session, "materials", write(tmp_path, "materials.csv", materials))
    j = import_file(session, "job_types", write(tmp_path, "job_types.csv", job_types))

    assert counts(m) == (2, 0, 0, 0) and counts(j) == (2, 0, 0, 0)
    pipe = session.get(Material, "PIPE")
    assert pipe is not None and pipe.unit == "m" and pipe.in_stock is None
    ac = session.get(JobType, "AC repair")
    assert ac is not None and ac.required_skills == ["hvac", "electrical"]
    assert (ac.setup_minutes, ac.default_duration_minutes) == (15, 90)


# --- bad rows -----------------------------------------------------------------------------

MIXED_TECHNICIANS_CSV = """\
id,name,timezone,shift_start,shift_end,calendars
T-001,Alice,Europe/Berlin,08:00,17:00,ics:T-001
T-003,Carl,Mars/Olympus_Mons,08:00,17:00,ics:T-003
T-004,Dina,Europe/Paris,08:00,17:00,ics:T-004;fax:+33-1-555
T-005,Emil,Europe/Paris,08:00,17:00,
"""

MIXED_APPOINTMENTS_CSV = """\
source,source_id,technician_id,job_type,start,end,duration_minutes,timezone,customer_name,address,lat,lon,materials
portal,OK-1,T-001,Repair,2026-05-04T09:00+02:00,,60,,Ann,1 A St,,,PIPE*2
portal,BAD-END,T-001,Repair,2026-05-04T09:00+02:00,2026-05-04T08:00+02:00,,,Ben,2 B St,,,
portal,BAD-NAIVE,T-001,Repair,2026-05-04 09:00,,60,,Cy,3 C St,,,
portal,BAD-TECH,T-999,Repair,2026-05-04T09:00+02:00,,60,,Di,4 D St,,,
portal,BAD-LAT,T-001,Repair,2026-05-04T09:00+02:00,,60,,Ed,5 E St,95.5,13.4,

portal,BAD-QTY,T-001,Repair,2026-05-04T09:00+02:00,,60,,Flo,6 F St,,,PIPE*two
portal,BAD-DATE,T-001,Repair,2026-13-01 09:00,,60,Europe/Berlin,Gus,7 G St,,,
portal,OK-2,,Repair,2026-05-04 11:00,,30,Europe/Berlin,Hal,8 H St,,,
"""


def test_mixed_technicians_file(session: Session, tmp_path: Path) -> None:
    path = write(tmp_path, "mixed_techs.csv", MIXED_TECHNICIANS_CSV)
    report = import_file(session, "technicians", path)

    assert counts(report) == (2, 0, 0, 2), report.format()
    by_row = {e.row: e for e in report.errors}
    assert by_row[2].field == "timezone"
    assert "'Mars/Olympus_Mons' is not a known IANA time zone" in by_row[2].message
    assert by_row[3].field == "calendars"
    assert "'fax' is not a known calendar platform" in by_row[3].message
    assert session.get(Technician, "T-003") is None
    assert session.get(Technician, "T-004") is None
    emil = session.get(Technician, "T-005")
    assert emil is not None and emil.bindings == []


def test_mixed_appointments_file(session: Session, tmp_path: Path) -> None:
    import_file(session, "technicians", write(tmp_path, "techs.csv", TECHNICIANS_CSV))
    path = write(tmp_path, "mixed.csv", MIXED_APPOINTMENTS_CSV)

    report = import_file(session, "appointments", path)

    assert counts(report) == (2, 0, 0, 6), report.format()
    # The blank line counts as row 6, as it would in a spreadsheet.
    assert [(e.row, e.field) for e in report.errors] == [
        (2, "end"),
        (3, "start"),
        (4, "technician_id"),
        (5, "lat"),
        (7, "materials"),
        (8, "start"),
    ]
    messages = {e.row: e.message for e in report.errors}
    assert "is not after start" in messages[2]
    assert "no UTC offset" in messages[3]
    assert "'T-999' is not a known technician" in messages[4]
    assert "'95.5' is not a valid latitude" in messages[5]
    assert "'two' is not a number" in messages[7]
    assert (
        RowError(8, "start", messages[8])
        .format()
        .startswith("row 8, field 'start': '2026-13-01 09:00' is not a valid date-time")
    )
    assert len(report.format().splitlines()) == 1 + 6  # summary, then one line per error

    ids = set(session.scalars(select(Appointment.source_id)))
    assert ids == {"OK-1", "OK-2"}

    letters = session.scalars(select(DeadLetter).order_by(DeadLetter.row_number)).all()
    assert [d.row_number for d in letters] == [2, 3, 4, 5, 7, 8]
    assert {d.source for d in letters} == {"import:mixed.csv"}
    assert {d.kind for d in letters} == {"appointment"}
    lat_letter = next(d for d in letters if d.row_number == 5)
    payload = json.loads(lat_letter.payload)
    assert payload["source_id"] == "BAD-LAT"
    assert payload["lat"] == "95.5" and payload["materials"] == ""  # exactly as read
    assert list(payload) == MIXED_APPOINTMENTS_CSV.splitlines()[0].split(",")
    assert lat_letter.reason.startswith("row 5, field 'lat':")


def test_json_row_that_is_not_an_object_is_dead_lettered(session: Session, tmp_path: Path) -> None:
    rows = [{"sku": "A", "name": "Thing"}, "oops", {"sku": "B", "name": "Other", "in_stock": -1}]
    report = import_file(session, "materials", write(tmp_path, "m.json", json.dumps(rows)))

    assert counts(report) == (1, 0, 0, 2)
    assert [(e.row, e.field) for e in report.errors] == [(2, None), (3, "in_stock")]
    payloads = [d.payload for d in session.scalars(select(DeadLetter).order_by(DeadLetter.id))]
    assert payloads == ['"oops"', json.dumps(rows[2])]


def test_duplicate_rows_in_one_file_are_rejected(session: Session, tmp_path: Path) -> None:
    text = "sku,name\nA,First\nB,Other\nA,Second\n"
    report = import_file(session, "materials", write(tmp_path, "m.csv", text))

    assert counts(report) == (2, 0, 0, 1)
    assert report.errors[0].row == 3 and "same record as row 1" in report.errors[0].message
    first = session.get(Material, "A")
    assert first is not None and first.name == "First"


def test_unknown_columns_are_ignored_with_a_warning(session: Session, tmp_path: Path) -> None:
    text = "sku,name,colour,supplier\nA,Thing,red,ACME\n"
    report = import_file(session, "materials", write(tmp_path, "m.csv", text))

    assert counts(report) == (1, 0, 0, 0)
    assert report.warnings == ["ignored unknown column(s): colour, supplier"]
    assert "warning: ignored unknown column(s)" in report.format()


# --- re-imports ---------------------------------------------------------------------------


def test_reimport_changes_nothing(db_url: str, tmp_path: Path) -> None:
    techs = write(tmp_path, "techs.csv", TECHNICIANS_CSV)
    jobs = write(tmp_path, "jobs.csv", APPOINTMENTS_CSV)
    assert counts(import_in_own_session(db_url, "technicians", techs)) == (2, 0, 0, 0)
    assert counts(import_in_own_session(db_url, "appointments", jobs)) == (3, 0, 0, 0)
    with session_scope(db_url) as s:
        before = {a.id: (a.version, a.updated_at) for a in s.scalars(select(Appointment))}
        tech_stamps = {t.id: t.updated_at for t in s.scalars(select(Technician))}

    assert counts(import_in_own_session(db_url, "technicians", techs)) == (0, 0, 2, 0)
    assert counts(import_in_own_session(db_url, "appointments", jobs)) == (0, 0, 3, 0)

    with session_scope(db_url) as s:
        after = {a.id: (a.version, a.updated_at) for a in s.scalars(select(Appointment))}
        assert after == before
        assert {t.id: t.updated_at for t in s.scalars(select(Technician))} == tech_stamps
        assert s.scalars(select(DeadLetter)).all() == []


def test_edited_row_bumps_version_once(db_url: str, tmp_path: Path) -> None:
    import_in_own_session(db_url, "technicians", write(tmp_path, "techs.csv", TECHNICIANS_CSV))
    import_in_own_session(db_url, "appointments", write(tmp_path, "jobs.csv", APPOINTMENTS_CSV))

    edited = APPOINTMENTS_CSV.replace("2026-05-04 08:00,,60", "2026-05-04 08:00,,75")
    edited_path = write(tmp_path, "jobs_v2.csv", edited)
    assert counts(import_in_own_session(db_url, "appointments", edited_path)) == (0, 1, 2, 0)
    assert counts(import_in_own_session(db_url, "appointments", edited_path)) == (0, 0, 3, 0)

    with session_scope(db_url) as s:
        versions = {a.source_id: a.version for a in s.scalars(select(Appointment))}
        drain = s.scalars(select(Appointment).where(Appointment.source_id == "C-7")).one()
        assert drain.duration_minutes == 75
        assert drain.end == datetime(2026, 5, 4, 14, 15, tzinfo=UTC)
    assert versions == {"P-100": 1, "C-7": 2, "P-101": 1}


def test_removed_binding_is_deactivated_not_deleted(db_url: str, tmp_path: Path) -> None:
    import_in_own_session(db_url, "technicians", write(tmp_path, "techs.csv", TECHNICIANS_CSV))
    with session_scope(db_url) as s:
        ids = {
            (b.platform, b.calendar_id): b.id
            for b in s.scalars(
                select(CalendarBinding).where(CalendarBinding.technician_id == "T-001")
            )
        }

    without_google = TECHNICIANS_CSV.replace(";google:alice@acme.com#google-acme", "")
    report = import_in_own_session(
        db_url, "technicians", write(tmp_path, "techs_v2.csv", without_google)
    )
    assert counts(report) == (0, 1, 1, 0)
    with session_scope(db_url) as s:
        state = {
            (b.platform, b.calendar_id): (b.id, b.active)
            for b in s.scalars(
                select(CalendarBinding).where(CalendarBinding.technician_id == "T-001")
            )
        }
    assert state == {
        ("ics", "T-001"): (ids[("ics", "T-001")], True),
        ("google", "alice@acme.com"): (ids[("google", "alice@acme.com")], False),
    }

    # Putting it back revives the same binding, so its ledger rows still apply.
    report = import_in_own_session(
        db_url, "technicians", write(tmp_path, "techs_v3.csv", TECHNICIANS_CSV)
    )
    assert counts(report) == (0, 1, 1, 0)
    with session_scope(db_url) as s:
        google = s.get(CalendarBinding, ids[("google", "alice@acme.com")])
        assert google is not None and google.active


def test_explicit_id_cannot_move(session: Session, tmp_path: Path) -> None:
    first = "id,source,source_id,job_type,start,duration_minutes,customer_name,address\n"
    row = "A-1,portal,X-1,Repair,2026-05-04T09:00+02:00,60,Ann,1 A St\n"
    import_file(session, "appointments", write(tmp_path, "a.csv", first + row))
    moved = first + row.replace("A-1,", "A-2,") + row.replace("X-1", "X-2")

    report = import_file(session, "appointments", write(tmp_path, "b.csv", moved))

    assert counts(report) == (0, 0, 0, 2)
    assert [(e.row, e.field) for e in report.errors] == [(1, "id"), (2, "id")]


# --- unreadable files ---------------------------------------------------------------------


def test_missing_required_column_is_a_file_error(session: Session, tmp_path: Path) -> None:
    no_timezone = "id,name,shift_start,shift_end\nT-1,Ann,08:00,17:00\n"
    with pytest.raises(
        ImportFileError, match=r"techs\.csv.*required column\(s\) missing: timezone"
    ):
        import_file(session, "technicians", write(tmp_path, "techs.csv", no_timezone))

    no_end = "source,source_id,job_type,start,customer_name,address\n"
    with pytest.raises(ImportFileError, match="end or duration_minutes"):
        import_file(session, "appointments", write(tmp_path, "jobs.csv", no_end))
    assert session.scalars(select(DeadLetter)).all() == []


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("absent.csv", None, "file not found"),
        ("techs.xlsx", "id,name\n", "unsupported file type '.xlsx'"),
        ("techs.json", "{not json", "not valid JSON"),
        ("techs.json", '{"people": []}', "expected a list of objects"),
        ("techs.csv", "", "the file is empty"),
        ("techs.csv", "id,id,name\n", "appear twice"),
    ],
)
def test_unreadable_files(
    sqlite_url: str, tmp_path: Path, name: str, content: str | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with session_scope(sqlite_url) as s, pytest.raises(ImportFileError, match=problem) as caught:
        import_file(s, "technicians", path)
    assert name in str(caught.value)


def test_row_the_database_refuses_rolls_back_alone(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fieldsync.importer as importer
    from fieldsync.store.writes import upsert_material

    def refuse_b(s: Session, data: object) -> bool:
        if getattr(data, "sku", None) == "B":
            s.add(Material(sku="B", name=None))  # NOT NULL: the flush at savepoint end fails
            return True
        return upsert_material(s, data)  # type: ignore[arg-type]

    monkeypatch.setattr(importer, "upsert_material", refuse_b)
    text = "sku,name\nA,One\nB,Two\nC,Three\n"
    report = import_file(session, "materials", write(tmp_path, "m.csv", text))
    session.flush()

    assert counts(report) == (2, 0, 0, 1)
    assert report.errors[0].row == 2
    assert report.errors[0].message.startswith("the database refused the row")
    assert set(session.scalars(select(Material.sku))) == {"A", "C"}
    assert [d.row_number for d in session.scalars(select(DeadLetter))] == [2]
