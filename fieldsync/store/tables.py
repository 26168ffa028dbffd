"""The store's tables. Times are kept as UTC; `UTCDateTime` hands back aware datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (SQLite keeps no offset) and always returns timezone-aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; attach a time zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime, time: Time}


class Technician(Base):
    __tablename__ = "technicians"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), default="")
    phone: Mapped[str] = mapped_column(String(64), default="")
    timezone: Mapped[str] = mapped_column(String(64))
    shift_start: Mapped[time]
    shift_end: Mapped[time]
    work_days: Mapped[list[int]] = mapped_column(JSON, default=lambda: [0, 1, 2, 3, 4])
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    region: Mapped[str] = mapped_column(String(100), default="", index=True)
    home_lat: Mapped[float | None] = mapped_column(Float)
    home_lon: Mapped[float | None] = mapped_column(Float)
    service_lat: Mapped[float | None] = mapped_column(Float)
    service_lon: Mapped[float | None] = mapped_column(Float)
    service_radius_km: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    bindings: Mapped[list[CalendarBinding]] = relationship(
        back_populates="technician", cascade="all, delete-orphan", lazy="selectin"
    )


class CalendarBinding(Base):
    __tablename__ = "calendar_bindings"
    __table_args__ = (UniqueConstraint("technician_id", "platform", "calendar_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    technician_id: Mapped[str] = mapped_column(ForeignKey("technicians.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(40))
    calendar_id: Mapped[str] = mapped_column(String(320))
    credentials_block: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    technician: Mapped[Technician] = relationship(back_populates="bindings")


class JobType(Base):
    __tablename__ = "job_types"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    required_skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    setup_minutes: Mapped[int] = mapped_column(Integer, default=0)
    default_duration_minutes: Mapped[int] = mapped_column(Integer, default=60)


class Material(Base):
    __tablename__ = "materials"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(32), default="each")
    in_stock: Mapped[float | None] = mapped_column(Float)  # None: stock is not tracked


class Appointment(Base):
    __tablename__ = "appointments"
    __table_args__ = (
        UniqueConstraint("source", "source_id", name="uq_appointment_source"),
        Index("ix_appointments_tech_start", "technician_id", "start"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str] = mapped_column(String(200))
    technician_id: Mapped[str | None] = mapped_column(ForeignKey("technicians.id"))
    status: Mapped[str] = mapped_column(String(20), default="booked")
    priority: Mapped[str] = mapped_column(String(20), default="normal")
    job_type: Mapped[str] = mapped_column(String(100))
    start: Mapped[datetime] = mapped_column(index=True)
    end: Mapped[datetime]
    duration_minutes: Mapped[int] = mapped_column(Integer)
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_phone: Mapped[str] = mapped_column(String(64), default="")
    customer_email: Mapped[str] = mapped_column(String(320), default="")
    address: Mapped[str] = mapped_column(String(500))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    materials: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    status_note: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SyncLedger(Base):
    """One row per (appointment, calendar binding): what we believe is on that calendar."""

    __tablename__ = "sync_ledger"
    __table_args__ = (
        UniqueConstraint("appointment_id", "binding_id", name="uq_ledger_item"),
        UniqueConstraint("idempotency_key", name="uq_ledger_key"),
        Index("ix_ledger_platform_state", "platform", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    appointment_id: Mapped[str] = mapped_column(ForeignKey("appointments.id"))
    binding_id: Mapped[int] = mapped_column(ForeignKey("calendar_bindings.id"), index=True)
    platform: Mapped[str] = mapped_column(String(40))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    remote_id: Mapped[str | None] = mapped_column(String(1024))
    etag: Mapped[str | None] = mapped_column(String(200))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="pending")
    pending_op: Mapped[str | None] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    pushed_version: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Conflict(Base):
    __tablename__ = "conflicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Same problem, same fingerprint: an alert goes out once, and again only when it changes.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    technician_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(20))
    appointment_ids: Mapped[list[str]] = mapped_column(JSON)
    detail: Mapped[str] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    alerted_at: Mapped[datetime | None]


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(200))  # e.g. "import:appointments.csv"
    kind: Mapped[str] = mapped_column(String(40))  # technician, appointment, webhook ...
    row_number: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)  # the raw input, exactly as received
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    replayed_at: Mapped[datetime | None]


class IntakeRequest(Base):
    """Every request the intake accepted, keyed by the source's own event id: a redelivered
    webhook finds its row and changes nothing."""

    __tablename__ = "intake_requests"
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_intake_event"),
        Index("ix_intake_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(300))
    # received: stored, not yet applied (its details could not be fetched yet);
    # applied / ignored: done; dead: well-signed but invalid, the raw body is dead-lettered.
    state: Mapped[str] = mapped_column(String(20))
    content_type: Mapped[str] = mapped_column(String(100), default="")
    body: Mapped[str] = mapped_column(Text)
    appointment_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    detail: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[datetime | None]


class OutboxEvent(Base):
    """A Prefect event written in the same transaction as the change it announces, and sent
    when the Prefect API answers. The id is the Prefect event id, so a resend is deduplicated."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "delivered_at", "occurred"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event: Mapped[str] = mapped_column(String(100))
    resource_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class AccessToken(Base):
    """Intake credentials: API keys for the portal, phone desk and CRM, and per-technician
    tokens for status reports and ICS feeds. Only a SHA-256 of each token is kept."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))  # api, status, feed
    subject: Mapped[str] = mapped_column(String(200), index=True)  # client name or technician
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
