"""Domain vocabulary shared by every layer: statuses, priorities and the views tasks pass around."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from enum import StrEnum


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    SCHEDULED = "scheduled"
    EN_ROUTE = "en_route"
    IN_PROGRESS = "in_progress"
    DELAYED = "delayed"
    COMPLETED = "completed"
    CANCELED = "canceled"


# Jobs that still belong on a technician's calendar as live work.
OPEN_STATUSES = frozenset(
    {
        AppointmentStatus.BOOKED,
        AppointmentStatus.SCHEDULED,
        AppointmentStatus.EN_ROUTE,
        AppointmentStatus.IN_PROGRESS,
        AppointmentStatus.DELAYED,
    }
)


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    EMERGENCY = "emergency"


class LedgerState(StrEnum):
    PENDING = "pending"  # an operation was started; its outcome is not known yet
    SYNCED = "synced"
    FAILED = "failed"
    DELETED = "deleted"


class OpKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


# SaaS platforms that can both send us bookings and receive a technician's events.
SAAS_PLATFORMS = frozenset(
    {
        "salesforce", "zoho", "servicetitan", "housecallpro", "jobber", "fieldedge",
        "servicem8", "deputy", "monday", "trello", "clickup", "smartsheet", "calendly",
        "acuity", "slack", "zapier", "hubspot", "asana",
    }
)  # fmt: skip

# Where an appointment can come from.
KNOWN_SOURCES = frozenset({"portal", "phone", "crm", "import", "google", "outlook", "icloud"}) | (
    SAAS_PLATFORMS
)

# Where a technician's events can go (a calendar binding's platform).
CALENDAR_PLATFORMS = (
    frozenset({"ics", "memory", "google", "google_workspace", "outlook", "icloud", "caldav"})
    | SAAS_PLATFORMS
)


@dataclass(frozen=True, slots=True)
class MaterialLine:
    sku: str
    quantity: float = 1.0
    name: str = ""


@dataclass(frozen=True, slots=True)
class BindingView:
    """Where one technician's events go: a platform, a calendar on it, and whose credentials."""

    id: int
    technician_id: str
    platform: str
    calendar_id: str
    credentials_block: str | None = None


@dataclass(frozen=True, slots=True)
class TechnicianView:
    id: str
    name: str
    timezone: str
    shift_start: time
    shift_end: time
    work_days: tuple[int, ...]
    skills: frozenset[str]
    home_lat: float | None
    home_lon: float | None
    region: str
    email: str = ""
    phone: str = ""
    service_lat: float | None = None
    service_lon: float | None = None
    service_radius_km: float | None = None
    bindings: tuple[BindingView, ...] = ()


@dataclass(frozen=True, slots=True)
class JobTypeView:
    name: str
    required_skills: frozenset[str] = frozenset()
    setup_minutes: int = 0
    default_duration_minutes: int = 60


@dataclass(frozen=True, slots=True)
class JobView:
    """One appointment as the flows see it: everything needed to detect conflicts and render it."""

    id: str
    source: str
    source_id: str
    technician_id: str | None
    status: AppointmentStatus
    priority: Priority
    job_type: str
    start: datetime
    end: datetime
    customer_name: str
    customer_phone: str
    customer_email: str
    address: str
    lat: float | None
    lon: float | None
    notes: str
    version: int
    materials: tuple[MaterialLine, ...] = ()
    status_note: str = ""

    @property
    def duration_minutes(self) -> int:
        # In UTC: subtracting two times of one zone counts wall-clock time, off by the DST jump.
        return int((self.end.astimezone(UTC) - self.start.astimezone(UTC)).total_seconds() // 60)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class EnrichedJob:
    """A job joined with what enrichment found: its technician, job type, materials and travel."""

    job: JobView
    technician: TechnicianView | None
    job_type: JobTypeView | None
    travel_minutes_from_previous: float | None = None
    missing_materials: tuple[str, ...] = field(default=())
