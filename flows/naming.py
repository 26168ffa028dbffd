"""Flow run names that tell ops what ran, built from the run's parameters."""

from __future__ import annotations

import re
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


def _day(name: str) -> str:
    """The date part of a datetime parameter, however it arrives (object or ISO text)."""
    value = flow_run.parameters.get(name)
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    try:
        return datetime.fromisoformat(str(value)).date().isoformat()
    except ValueError:
        return str(value)


def retry_failed_run_name() -> str:
    parts = ["retry-failed", _param("platform") or "all"]
    if who := _param("technician_id"):
        parts.append(who)
    start, end = _day("start"), _day("end")
    if start or end:
        parts.append(f"{start}..{end}")
    return "-".join(parts)


def _window(days: str) -> str:
    day = _day("as_of") or datetime.now(UTC).date().isoformat()
    return f"{day}+{days}d"


def conflict_sweep_run_name() -> str:
    return f"conflict-sweep-{_param('region') or 'all'}-{_window(_param('days_ahead') or '2')}"


def drift_repair_run_name() -> str:
    name = f"drift-repair-{_param('platform') or 'all'}-{_window(_param('days_ahead') or '14')}"
    return name + ("-dry-run" if flow_run.parameters.get("dry_run") else "")


def artifact_key(label: str) -> str:
    """Prefect accepts lowercase letters, digits and dashes in artifact keys."""
    return re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:100] or "fieldsync"
