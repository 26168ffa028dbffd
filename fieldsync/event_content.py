"""Turn an enriched job into the calendar event a technician sees on the phone."""

from __future__ import annotations

from fieldsync.domain import AppointmentStatus, EnrichedJob, Priority
from fieldsync.events import CalendarEvent, EventStatus

_STATUS_LABEL = {
    AppointmentStatus.COMPLETED: "Completed",
    AppointmentStatus.DELAYED: "Delayed",
    AppointmentStatus.EN_ROUTE: "En route",
    AppointmentStatus.IN_PROGRESS: "In progress",
}


def event_for(enriched: EnrichedJob, *, tentative: bool = False) -> CalendarEvent:
    job = enriched.job
    tech = enriched.technician
    tz = tech.timezone if tech else "UTC"
    prefix = "EMERGENCY: " if job.priority is Priority.EMERGENCY else ""
    label = _STATUS_LABEL.get(job.status)
    suffix = f" [{label}]" if label else ""
    summary = f"{prefix}{job.job_type} - {job.customer_name}{suffix}"

    materials = ", ".join(
        f"{m.name or m.sku} x{m.quantity:g}" if m.quantity != 1 else (m.name or m.sku)
        for m in job.materials
    )
    lines = [
        f"Job: {job.id} ({job.job_type})",
        f"Priority: {job.priority.value}",
        f"Status: {job.status.value}",
        f"Duration: {job.duration_minutes} min",
        f"Address: {job.address}",
        f"Customer: {job.customer_name}",
    ]
    if job.customer_phone:
        lines.append(f"Phone: {job.customer_phone}")
    if job.customer_email:
        lines.append(f"Email: {job.customer_email}")
    if materials:
        lines.append(f"Materials: {materials}")
    if enriched.missing_materials:
        lines.append(f"Materials out of stock: {', '.join(enriched.missing_materials)}")
    if job.notes:
        lines.append(f"Notes: {job.notes}")
    if job.status_note:
        lines.append(f"Update: {job.status_note}")
    lines.append(f"Source: {job.source} {job.source_id}")

    status: EventStatus = "tentative" if tentative else "confirmed"
    if job.status is AppointmentStatus.CANCELED:
        status = "cancelled"
    details = (
        ("job_type", job.job_type),
        ("priority", job.priority.value),
        ("status", job.status.value),
        ("duration_minutes", str(job.duration_minutes)),
        ("address", job.address),
        ("customer", job.customer_name),
        ("customer_phone", job.customer_phone),
        ("customer_email", job.customer_email),
        ("materials", materials),
        ("notes", job.notes),
    )
    return CalendarEvent(
        job_id=job.id,
        summary=summary,
        start=job.start,
        end=job.end,
        timezone=tz,
        location=job.address,
        description="\n".join(lines),
        status=status,
        lat=job.lat,
        lon=job.lon,
        categories=(job.job_type, job.priority.value),
        details=details,
    )
