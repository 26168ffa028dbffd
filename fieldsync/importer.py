"""Import technicians, appointments, materials and job types from CSV or JSON files.

A file is taken row by row: valid rows are written, bad rows are reported (row, field, value)
and kept in the dead-letter table exactly as read, so they can be fixed and replayed without
hunting for the original file. One bad row never stops the others. A file that cannot be read
as a whole (missing, not CSV/JSON, a required column absent) raises ImportFileError instead.

Nothing here commits: the caller's session_scope decides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fieldsync.inputs import (
    AppointmentInput,
    JobTypeInput,
    MaterialInput,
    TechnicianInput,
    field_errors,
    required_fields,
    show,
)
from fieldsync.store.tables import DeadLetter, JobType, Material, Technician
from fieldsync.store.writes import (
    Outcome,
    WriteError,
    upsert_appointment,
    upsert_job_type,
    upsert_material,
    upsert_technician,
)

ImportKind = Literal["technicians", "appointments", "materials", "job_types"]


class ImportFileError(Exception):
    """The file as a whole cannot be imported; no row of it was written."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"cannot import {path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # 1-based data row; the header does not count
    field: str | None  # None: the row as a whole (e.g. not an object, a duplicate)
    message: str

    def format(self) -> str:
        where = f"row {self.row}" if self.field is None else f"row {self.row}, field '{self.field}'"
        return f"{where}: {self.message}"


@dataclass(slots=True)
class ImportReport:
    path: Path
    kind: ImportKind
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rejected == 0

    def summary(self) -> str:
        return (
            f"{self.path.name} ({self.kind}): {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.rejected} rejected"
        )

    def format(self) -> str:
        """The summary, then one line per warning and one line per error."""
        lines = [self.summary()]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [e.format() for e in self.errors]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Spec:
    model: type[BaseModel]
    dead_letter_kind: str
    key: Callable[[Any], tuple[str, ...]]
    write: Callable[[Session, Any], Outcome]


def _outcome(created: bool, changed: bool) -> Outcome:
    if created:
        return "created"
    return "updated" if changed else "unchanged"


def _write_technician(session: Session, data: TechnicianInput) -> Outcome:
    is_new = session.get(Technician, data.id) is None
    return _outcome(is_new, upsert_technician(session, data))


def _write_material(session: Session, data: MaterialInput) -> Outcome:
    is_new = session.get(Material, data.sku) is None
    return _outcome(is_new, upsert_material(session, data))


def _write_job_type(session: Session, data: JobTypeInput) -> Outcome:
    is_new = session.get(JobType, data.name) is None
    return _outcome(is_new, upsert_job_type(session, data))


def _write_appointment(session: Session, data: AppointmentInput) -> Outcome:
    return upsert_appointment(session, data)[1]


_SPECS: dict[str, _Spec] = {
    "technicians": _Spec(TechnicianInput, "technician", lambda d: (d.id,), _write_technician),
    "appointments": _Spec(
        AppointmentInput,
        "appointment",
        lambda d: (d.source, d.source_id),
        _write_appointment,
    ),
    "materials": _Spec(MaterialInput, "material", lambda d: (d.sku,), _write_material),
    "job_types": _Spec(JobTypeInput, "job_type", lambda d: (d.name,), _write_job_type),
}


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Table:
    columns: list[str]
    rows: list[dict[str, Any]]  # values as read; missing cells are NaN/None
    raw: list[Any]  # what each row was in the file, for the dead-letter payload


def _read_csv(path: Path) -> _Table:
    try:
        # Everything stays text and nothing becomes NaN by pandas' guesswork: its default NA
        # words include "NA" and "None", which are a region code and a customer's answer here.
        # No header row in pandas' sense, so duplicate column names are seen, not renamed.
        # Blank lines are kept so row numbers match what a spreadsheet shows.
        frame = pd.read_csv(
            path,
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except FileNotFoundError:
        raise ImportFileError(path, "file not found") from None
    except pd.errors.EmptyDataError:
        raise ImportFileError(path, "the file is empty (no header row)") from None
    except UnicodeDecodeError:
        raise ImportFileError(path, "not a UTF-8 text file") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise ImportFileError(path, f"not readable as CSV: {exc}") from None

    header = [str(name).strip() for name in frame.iloc[0].tolist()]
    if any(not name for name in header):
        raise ImportFileError(path, "the header row has an empty column name")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ImportFileError(path, f"column(s) appear twice in the header: {duplicates}")
    body = frame.iloc[1:]
    body.columns = pd.Index(header)
    rows: list[dict[str, Any]] = [
        # A short row has no cell at all for its last columns; JSON null says so honestly.
        {str(k): None if _is_missing(v) and not isinstance(v, str) else v for k, v in r.items()}
        for r in body.to_dict(orient="records")
    ]
    return _Table(header, rows, rows)


def _read_json(path: Path, kind: ImportKind) -> _Table:
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ImportFileError(path, "file not found") from None
    except UnicodeDecodeError:
        raise ImportFileError(path, "not a UTF-8 text file") from None
    except json.JSONDecodeError as exc:
        raise ImportFileError(path, f"not valid JSON: {exc}") from None
    except OSError as exc:
        raise ImportFileError(path, f"cannot read the file: {exc}") from None

    records = document.get(kind) if isinstance(document, dict) else document
    if not isinstance(records, list):
        raise ImportFileError(
            path, f'expected a list of objects, or {{"{kind}": [...]}}, at the top level'
        )
    # Rows that are not objects still get a row number (and a rejection) of their own.
    frame = pd.DataFrame([r if isinstance(r, dict) else {} for r in records], dtype=object)
    columns = [str(c) for c in frame.columns]
    rows: list[dict[str, Any]] = [
        {str(k): v for k, v in record.items()} for record in frame.to_dict(orient="records")
    ]
    return _Table(columns, rows, records)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def _clean(row: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The row as the model should see it: known fields only, blank cells left out."""
    return {
        name: value.strip() if isinstance(value, str) else value
        for name, value in row.items()
        if name in known and not _is_missing(value)
    }


def _payload(raw: Any) -> str:
    def fallback(value: Any) -> str:
        return str(value)

    return json.dumps(raw, ensure_ascii=False, default=fallback)


def _check_columns(path: Path, kind: ImportKind, columns: list[str], known: set[str]) -> None:
    present = set(columns)
    missing = [name for name in required_fields(_SPECS[kind].model) if name not in present]
    if kind == "appointments" and not present & {"end", "duration_minutes"}:
        missing.append("end or duration_minutes")
    if missing:
        raise ImportFileError(
            path,
            f"required column(s) missing: {', '.join(missing)} "
            f"(found: {', '.join(columns) or 'none'})",
        )


# --- importing ------------------------------------------------------------------------------


def import_file(session: Session, kind: ImportKind, path: Path) -> ImportReport:
    """Validate and upsert every row of a CSV or JSON file of one kind.

    Each row is written in its own SAVEPOINT, so a row the database refuses rolls back alone.
    Rejected rows go to the dead-letter table with the raw row as payload.
    """
    if kind not in _SPECS:
        raise ValueError(f"unknown import kind {kind!r} (one of: {', '.join(_SPECS)})")
    spec = _SPECS[kind]
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = _read_csv(path)
    elif suffix == ".json":
        table = _read_json(path, kind)
    else:
        raise ImportFileError(
            path, f"unsupported file type {suffix or '(none)'!r}; use .csv or .json"
        )

    known = set(spec.model.model_fields)
    if table.columns or table.rows:  # an empty JSON list has no columns, nor anything to import
        _check_columns(path, kind, table.columns, known)
    report = ImportReport(path=path, kind=kind)
    extra = [name for name in table.columns if name not in known]
    if extra:
        report.warnings.append(f"ignored unknown column(s): {', '.join(extra)}")

    def reject(number: int, raw: Any, errors: list[RowError]) -> None:
        report.rejected += 1
        report.errors.extend(errors)
        session.add(
            DeadLetter(
                source=f"import:{path.name}",
                kind=spec.dead_letter_kind,
                row_number=number,
                payload=_payload(raw),
                reason="\n".join(e.format() for e in errors),
            )
        )
        # Flushed now, outside any row's savepoint, so no later rollback can take it along.
        session.flush()

    first_row_for: dict[tuple[str, ...], int] = {}
    for index, (row, raw) in enumerate(zip(table.rows, table.raw, strict=True)):
        number = index + 1
        if not isinstance(raw, dict):
            reject(number, raw, [RowError(number, None, f"{show(raw)} is not an object")])
            continue
        values = _clean(row, known)
        if not values:
            continue  # a blank line in a spreadsheet is not a record
        try:
            data = spec.model.model_validate(values)
        except ValidationError as exc:
            reject(number, raw, [RowError(number, e.field, e.message) for e in field_errors(exc)])
            continue

        key = spec.key(data)
        if key in first_row_for:
            # Two rows for one record would fight: the later one would win now and lose on
            # the next import, so re-imports would never settle.
            message = f"same record as row {first_row_for[key]} ({', '.join(key)}); fix one of them"
            reject(number, raw, [RowError(number, None, message)])
            continue
        first_row_for[key] = number

        try:
            with session.begin_nested():
                outcome = spec.write(session, data)
        except WriteError as exc:
            reject(number, raw, [RowError(number, exc.field, exc.message)])
            continue
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            reject(number, raw, [RowError(number, None, f"the database refused the row: {reason}")])
            continue
        if outcome == "created":
            report.created += 1
        elif outcome == "updated":
            report.updated += 1
        else:
            report.unchanged += 1
    session.flush()
    return report
