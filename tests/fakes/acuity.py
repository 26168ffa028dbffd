"""A stateful fake of the Acuity Scheduling API v1 (https://developers.acuityscheduling.com).

    GET /api/v1/appointments/{id}     the appointment, as Acuity renders it; 404 when unknown
    GET /api/v1/calendars             every calendar of the account (id, name, email, timezone)

Authentication is HTTP Basic with the numeric user id and the API key; anything else is 401
with Acuity's error body ({"status_code", "message", "error"}). `book()`, `reschedule()` and
`cancel()` change state the way the Acuity UI would, and `webhook()` builds the form-encoded
notification body Acuity would then send.
"""

from __future__ import annotations

import base64
import copy
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from tests.fakes.loopback_api import LoopbackApi, Reply, Seen

_APPOINTMENT = re.compile(r"^/api/v1/appointments/(\d+)$")


class FakeAcuity(LoopbackApi):
    def __init__(self, user_id: str, api_key: str) -> None:
        super().__init__()
        token = base64.b64encode(f"{user_id}:{api_key}".encode()).decode()
        self._expected_auth = f"Basic {token}"
        self.appointments: dict[int, dict[str, Any]] = {}
        self.calendars: dict[int, dict[str, Any]] = {}
        self._next_id = 1_100_000_000

    # --- state ------------------------------------------------------------------------------

    def add_calendar(self, calendar_id: int, name: str, email: str, tz: str) -> None:
        self.calendars[calendar_id] = {
            "id": calendar_id,
            "name": name,
            "email": email,
            "replyTo": email.split(",")[0].strip(),
            "description": "",
            "location": "",
            "timezone": tz,
        }

    def book(self, template: dict[str, Any], **changes: Any) -> int:
        appointment = copy.deepcopy(template)
        appointment.update(changes)
        self._next_id += 1
        appointment["id"] = self._next_id
        self.appointments[self._next_id] = appointment
        return self._next_id

    def reschedule(self, appointment_id: int, start: datetime) -> None:
        appointment = self.appointments[appointment_id]
        appointment["datetime"] = start.strftime("%Y-%m-%dT%H:%M:%S%z")
        end = start + timedelta(minutes=int(appointment["duration"]))
        appointment["time"] = start.strftime("%-I:%M%p").lower()
        appointment["endTime"] = end.strftime("%-I:%M%p").lower()

    def cancel(self, appointment_id: int) -> None:
        self.appointments[appointment_id]["canceled"] = True

    def webhook(self, action: str, appointment_id: int) -> bytes:
        appointment = self.appointments[appointment_id]
        return urlencode(
            {
                "action": action,
                "id": appointment_id,
                "calendarID": appointment["calendarID"],
                "appointmentTypeID": appointment["appointmentTypeID"],
            }
        ).encode()

    # --- HTTP -------------------------------------------------------------------------------

    def route(self, seen: Seen) -> Reply:
        if seen.headers.get("authorization") != self._expected_auth:
            return _error(401, "unauthorized", "Invalid user ID or API key.")
        if seen.method == "GET" and seen.path == "/api/v1/calendars":
            return Reply(200, list(self.calendars.values()))
        found = _APPOINTMENT.match(seen.path)
        if seen.method == "GET" and found:
            appointment = self.appointments.get(int(found[1]))
            if appointment is None:
                return _error(404, "not_found", "The appointment you requested was not found.")
            return Reply(200, appointment)
        return _error(404, "not_found", "Not found.")


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"status_code": status, "message": message, "error": code})
