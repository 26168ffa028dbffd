"""What every route shares: the app's state, credentials, errors, and turning a receipt into
an answer."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from connectors.base import BusyBlock
from fieldsync.domain import TechnicianView
from fieldsync.inputs import FieldError, plain_message
from fieldsync.intake import tokens
from fieldsync.intake.api_models import ErrorResponse, IntakeResponse
from fieldsync.intake.commands import Command
from fieldsync.intake.service import Envelope, Intake, Receipt
from fieldsync.intake.sources.base import Directory, WebhookSource
from fieldsync.store.db import session_scope

BusyReader = Callable[[list[tuple[TechnicianView, list[date]]]], dict[str, list[BusyBlock]]]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422)
}


@dataclass(frozen=True)
class IntakeState:
    intake: Intake
    db_url: str | None
    sources: dict[str, WebhookSource]
    directory: Directory
    busy_reader: BusyReader | None


def state(request: Request) -> IntakeState:
    found: IntakeState = request.app.state.fieldsync
    return found


State = Annotated[IntakeState, Depends(state)]


class ApiError(Exception):
    def __init__(self, status: int, message: str, errors: list[FieldError] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def error_response(
    status: int, message: str, errors: list[FieldError] | None = None
) -> JSONResponse:
    body = {
        "error": message,
        "errors": [{"field": e.field, "message": e.message} for e in errors or []],
    }
    return JSONResponse(body, status_code=status)


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


_KEY_CACHE_SECONDS = 30.0
_key_cache: dict[tuple[str | None, str], tuple[float, str | None]] = {}


def client_of(db_url: str | None, authorization: str | None) -> str | None:
    """The API client a key belongs to. Answers are cached for 30 s, so a revoked key stops
    working within 30 s, and a busy intake does not read the key table on every request."""
    token = bearer(authorization)
    if token is None:
        return None
    now = time.monotonic()
    cache_key = (db_url, tokens.digest(token))
    hit = _key_cache.get(cache_key)
    if hit is not None and now - hit[0] < _KEY_CACHE_SECONDS:
        return hit[1]
    with session_scope(db_url) as session:
        client = tokens.subject_of(session, "api", token)
    if len(_key_cache) > 10_000:
        _key_cache.clear()
    _key_cache[cache_key] = (now, client)
    return client


def api_client(found: State, authorization: Annotated[str | None, Header()] = None) -> str:
    client = client_of(found.db_url, authorization)
    if client is None:
        raise ApiError(
            401,
            "missing or unknown API key: send 'Authorization: Bearer <key>' with a key "
            "issued by 'fieldsync tokens issue api <client>'",
        )
    return client


Client = Annotated[str, Depends(api_client)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=200,
        description="The sender's id for this request; a repeat with the same key "
        "changes nothing. Defaults to a hash of the method, path and body.",
    ),
]
AppointmentId = Annotated[str, Path(min_length=1, max_length=64)]


def submit(
    found: IntakeState,
    client: str,
    key: str | None,
    payload: str,
    route: str,
    commands: list[Command],
) -> Receipt:
    """One request of our own API into the store. `route` and `payload` are what a replay of
    its dead letter would parse again (`fieldsync.intake.stored_requests`)."""
    event_id = key or hashlib.sha256(f"{route}\n{payload}".encode()).hexdigest()
    envelope = Envelope(f"api:{client}", event_id, payload, route={"route": route})
    return found.intake.accept(envelope, lambda: commands, actor=client, check_first=False)


def answer(receipt: Receipt, *, created_status: int = 200) -> Response:
    if receipt.state == "dead":
        if receipt.not_found:
            raise ApiError(404, receipt.error)
        raise ApiError(422, receipt.error or "the request was refused earlier")
    body = IntakeResponse(
        state=receipt.state,
        appointment_ids=receipt.appointment_ids,
        duplicate=receipt.duplicate,
        events=receipt.events,
        double_booked_with=receipt.double_booked_with,
        notes=[n for n in receipt.notes if n],
    )
    status = 202 if receipt.state == "received" else created_status if receipt.created else 200
    return Response(body.model_dump_json(), status_code=status, media_type="application/json")


def validation_problems(exc: RequestValidationError) -> list[FieldError]:
    problems: list[FieldError] = []
    for error in exc.errors():
        loc = [p for p in error.get("loc", ()) if p != "body"]
        if error.get("type") == "json_invalid":
            where = error.get("ctx", {}).get("error", "")
            problems.append(FieldError(None, f"malformed JSON: {where}".strip()))
            continue
        if loc and loc[0] in ("header", "path", "query"):
            loc = loc[1:]
        hint, message = plain_message(error)
        problems.append(FieldError(hint or (".".join(str(p) for p in loc) or None), message))
    return problems


def summary(problems: list[FieldError]) -> str:
    return "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in problems)


def request_event_id(request: Request, raw: str) -> str:
    key = request.headers.get("idempotency-key")
    route = f"{request.method} {request.url.path}"
    return key or hashlib.sha256(f"{route}\n{raw}".encode()).hexdigest()
