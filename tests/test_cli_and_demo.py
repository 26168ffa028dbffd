from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from fieldsync import settings
from fieldsync.cli import main
from fieldsync.demo import run_demo
from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment, DeadLetter


def test_safe_database_url_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://svc:s3cr3t-pw@db.internal:5432/fieldsync")
    shown = settings.safe_database_url()
    assert "s3cr3t" not in shown and shown.endswith("@db.internal:5432/fieldsync")


def test_import_command_reports_bad_rows_and_keeps_good_ones(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    techs = tmp_path / "techs.csv"
    techs.write_text(
        "id,name,timezone,shift_start,shift_end,calendars\n"
        "T1,Maria,America/Chicago,07:00,17:00,ics:T1\n"
    )
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "source,source_id,technician_id,job_type,start,end,customer_name,address\n"
        "portal,A1,T1,AC repair,2026-12-01T09:00:00-06:00,2026-12-01T10:00:00-06:00,Dana,1 Elm\n"
        "portal,A2,T1,AC repair,2026-12-01T11:00:00-06:00,2026-12-01T10:00:00-06:00,Lee,2 Elm\n"
    )
    assert main(["import", "technicians", str(techs)]) == 0
    assert main(["import", "appointments", str(jobs)]) == 1  # some rows were rejected
    out = capsys.readouterr().out
    assert "row 2" in out and "end" in out
    with session_scope(sqlite_url) as s:
        assert s.scalar(select(func.count()).select_from(Appointment)) == 1
        [letter] = s.scalars(select(DeadLetter))
        assert letter.row_number == 2 and "Lee" in letter.payload


def test_import_command_names_an_unreadable_file(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", "appointments", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err


@pytest.mark.usefixtures("prefect_harness")
def test_demo_runs_and_a_second_run_pushes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FIELDSYNC_HOME", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("FIELDSYNC_FEED_DIR", raising=False)
    assert run_demo() == 0
    first = capsys.readouterr().out
    assert "Changes pushed: 66" in first  # 67 jobs, one canceled
    assert "[critical] overlap  T-104" in first
    feeds = sorted((tmp_path / "feeds").glob("*.ics"))
    assert len(feeds) == 8
    assert run_demo() == 0
    second = capsys.readouterr().out
    assert "Changes pushed: 0" in second and "unchanged 66" in second
