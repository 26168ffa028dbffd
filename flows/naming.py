"""Flow run names that tell ops what ran, built from the run's parameters."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.runtime import flow_run


def _param(name: str) -> str:
    value = flow_run.parameters.get(name)
    return "" if value is None else str(value)


def appointment_run_name() -> str:
    name = flow_run.flow_name or "sync"
    extra = _param("status")
    return f"{name}-{_param('appointment_id')}" + (f"-{extra}" if extra else "")


def shift_run_name() -> str:
    day = _param("shift_date") or datetime.now(UTC).date().isoformat()
    who = _param("technician_id") or _param("region") or "all"
    return f"shift-start-{day}-{who}"
