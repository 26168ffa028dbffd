"""Request and response bodies of the intake's own JSON API, as documented in its OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from fieldsync.inputs import AppointmentInput
from fieldsync.options_service import Situation

ApiSource = Literal["portal", "phone", "crm"]


class BookingRequest(AppointmentInput):
    """A new appointment from the online portal, the phone desk or the CRM. Times without a
    UTC offset need `timezone`; `end` or `duration_minutes` gives the length."""

    source: ApiSource = Field(description="Where the booking was taken.")
    source_id: str = Field(
        min_length=1, max_length=200, description="The booking's id in that system."
    )


class RescheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime = Field(description="New start, with its UTC offset.")
    end: AwareDatetime | None = Field(None, description="New end; default: keep the length.")
    duration_minutes: int | None = Field(None, gt=0, le=24 * 60)
    technician_id: str | None = Field(None, max_length=64, description="Also reassign.")

    @model_validator(mode="after")
    def _ordered(self) -> RescheduleRequest:
        if self.end is not None and self.end <= self.start:
            raise ValueError(
                f"end {self.end.isoformat()} is not after start {self.start.isoformat()}"
            )
        return self


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=2000)


class StatusRequest(BaseModel):
    """A technician's report. `delayed` needs `eta` (arrival, or finish time when the job is
    already in progress); `completed` may give `completed_at` (finished early or late)."""

    model_config = ConfigDict(extra="forbid")

    appointment_id: str = Field(min_length=1, max_length=64)
    status: Literal["en_route", "in_progress", "completed", "delayed", "canceled"]
    eta: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    note: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _eta(self) -> StatusRequest:
        if self.status == "delayed" and self.eta is None:
            raise ValueError("a delay needs 'eta', the new arrival or finish time")
        return self


class OptionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    situation: Situation = "emergency"
    new_eta: AwareDatetime | None = Field(None, description="Needed for a delay.")
    as_of: AwareDatetime | None = Field(None, description="Plan from this moment; default now.")
    limit: int = Field(5, ge=1, le=20)


class IntakeResponse(BaseModel):
    state: Literal["applied", "ignored", "received", "dead"]
    appointment_ids: list[str]
    duplicate: bool = False
    events: list[str] = []
    double_booked_with: list[str] = []
    notes: list[str] = []


class OptionOut(BaseModel):
    rank: int
    technician_id: str
    appointment_id: str
    start: datetime
    end: datetime
    travel_minutes: float
    moves: list[dict[str, str]]
    reason: str


class OptionsResponse(BaseModel):
    appointment_id: str
    situation: Situation
    options: list[OptionOut]
    notes: list[str]


class FieldProblem(BaseModel):
    field: str | None
    message: str


class ErrorResponse(BaseModel):
    error: str
    errors: list[FieldProblem] = []
