"""What technicians' phones call: status reports, and their calendar feed."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, Path
from fastapi.responses import Response

from fieldsync.intake import tokens
from fieldsync.intake.api.common import ERRORS, ApiError, IdempotencyKey, State, answer, bearer
from fieldsync.intake.api_models import ErrorResponse, IntakeResponse, StatusRequest
from fieldsync.intake.feeds import feed_for
from fieldsync.intake.service import Envelope
from fieldsync.intake.stored_requests import status_report
from fieldsync.store.db import session_scope

router = APIRouter()


@router.post(
    "/v1/technicians/{technician_id}/status",
    response_model=IntakeResponse,
    responses={403: {"model": ErrorResponse}, **ERRORS},
    tags=["technicians"],
)
def technician_status(
    technician_id: Annotated[str, Path(min_length=1, max_length=64)],
    report: StatusRequest,
    found: State,
    authorization: Annotated[str | None, Header()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A technician's own report, authenticated with that technician's status token."""
    with session_scope(found.db_url) as session:
        owner = tokens.subject_of(session, "status", bearer(authorization))
    if owner is None:
        raise ApiError(
            401, "missing or unknown technician token: send 'Authorization: Bearer <token>'"
        )
    if owner != technician_id:
        raise ApiError(403, f"this token belongs to another technician, not {technician_id}")
    payload = report.model_dump_json()
    command = status_report(technician_id, report)
    event_id = idempotency_key or hashlib.sha256(payload.encode()).hexdigest()
    envelope = Envelope(f"technician:{technician_id}", event_id, payload)
    return answer(found.intake.accept(envelope, lambda: [command], actor="technician"))


@router.get(
    "/feeds/{token}.ics",
    tags=["feeds"],
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}, 404: {"model": ErrorResponse}},
)
def ics_feed(token: Annotated[str, Path(max_length=200)], found: State) -> Response:
    """A technician's calendar feed; the URL's token is the only credential, so it is long,
    random and revocable ('fieldsync tokens revoke feed <technician>')."""
    with session_scope(found.db_url) as session:
        technician_id = tokens.subject_of(session, "feed", token)
        if technician_id is None:
            raise ApiError(404, "no feed at this address")
        content = feed_for(session, technician_id)
    return Response(content, media_type="text/calendar; charset=utf-8",
                    headers={"Cache-Control": "private, max-age=60"})  # fmt: skip
