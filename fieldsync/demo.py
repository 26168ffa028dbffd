"""`make demo`: load the sample day into SQLite and run the shift-start flow into ICS feeds."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

from sqlalchemy import select

from fieldsync import settings
from fieldsync.store.db import migrate, session_scope
from fieldsync.store.tables import Appointment, Technician

DATA = Path(__file__).resolve().parent / "demo_data"
DEMO_DAY = date(2026, 12, 1)
FILES = (
    ("job_types", "job_types.csv"),
    ("materials", "materials.csv"),
    ("technicians", "technicians.csv"),
    ("appointments", "appointments.csv"),
)


def load_sample_day() -> list[str]:
    from fieldsync.importer import import_file

    migrate()
    lines = []
    for kind, name in FILES:
        with session_scope() as session:
            report = import_file(session, kind, DATA / name)  # type: ignore[arg-type]
        lines.append(
            f"  {kind:<13} {report.created:>3} new, {report.updated:>3} updated, "
            f"{report.unchanged:>3} unchanged, {report.rejected:>3} rejected"
        )
    return lines


def run_demo() -> int:
    from flows.shift_start import shift_start_sync

    print(f"fieldsync demo: store {settings.safe_database_url()}")
    print("Loading the sample day (Dallas-Fort Worth HVAC, Tuesday 2026-12-01):")
    for line in load_sample_day():
        print(line)

    result = shift_start_sync(DEMO_DAY, region="dfw")

    with session_scope() as session:
        techs = {t.id: t.name for t in session.scalars(select(Technician))}
        jobs = list(session.scalars(select(Appointment).order_by(Appointment.start)))
    per_tech = Counter(a.technician_id for a in jobs if a.status != "canceled")
    canceled = [a for a in jobs if a.status == "canceled"]
    emergencies = [a for a in jobs if a.priority == "emergency"]

    print()
    print("Jobs per technician:")
    for tech_id, name in sorted(techs.items()):
        print(f"  {tech_id}  {name:<18} {per_tech.get(tech_id, 0):>2} jobs")
    print(f"  canceled (kept off calendars): {', '.join(a.id for a in canceled) or 'none'}")
    print(f"  emergencies: {', '.join(f'{a.id} ({a.job_type})' for a in emergencies) or 'none'}")
    print()
    print(
        f"Conflicts found: {len(result.conflicts)} "
        f"({result.new_conflicts} new in this run; each conflict alerts once)"
    )
    for f in result.conflicts:
        print(f"  [{f.severity}] {f.kind:<8} {f.technician_id}: {f.detail}")
    print()
    report = result.report("ics")
    print(
        f"Changes pushed: {result.writes} "
        f"(created {report.created}, updated {report.updated}, deleted {report.deleted}, "
        f"unchanged {report.unchanged}, failed {report.failed})"
    )
    feeds = sorted(settings.feed_dir().glob("*.ics"))
    print(f"ICS feeds written to {settings.feed_dir().resolve()}:")
    for feed in feeds:
        print(f"  {feed.name}  ({feed.read_text().count('BEGIN:VEVENT')} events)")
    print()
    print("Subscribe a calendar app to a feed file (or serve the folder over HTTP).")
    print("Run `make demo` again: nothing changed, so 0 changes are pushed.")
    return 0
