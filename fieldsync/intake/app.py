"""The intake HTTP service: our own JSON API, platform webhooks, technician status, ICS feeds
and rescheduling options. Thin on purpose: it authenticates, parses and translates; the rules
live in `fieldsync.intake.service` and the store.

Status codes: 201 created, 200 applied or already seen, 202 stored but waiting on the platform,
400 malformed body, 401 bad credentials or signature, 404 unknown job or feed, 413 body over
1 MiB, 422 well-formed but invalid (dead-lettered when the sender was authenticated).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from connectors.base import BusyBlock
from fieldsync.domain import AppointmentStatus, TechnicianView
from fieldsync.inputs import FieldError, field_errors, plain_message
from fieldsync.intake import tokens
from fieldsync.intake.api_models import (
    BookingRequest,
    CancelRequest,
    ErrorResponse,
    IntakeResponse,
    OptionOut,
    OptionsRequest,
    OptionsResponse,
    RescheduleRequest,
    StatusRequest,
)
from fieldsync.intake.body_limit import MAX_BODY_BYTES, BodyLimit
from fieldsync.intake.commands import (
    AppointmentRef,
    Book,
    Cancel,
    Change,
    Command,
    StatusReport,
)
from fieldsync.intake.feeds import feed_for
from fieldsync.intake.service import Envelope, Intake, Receipt
from fieldsync.intake.sources.base import (
    Directory,
    SignatureError,
    WebhookRequest,
    WebhookSource,
)
from fieldsync.options_service import NoOptions, options_for
from fieldsync.store import reads
from fieldsync.store.changes import AppointmentChange
from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment, Technician

log = logging.getLogger(__name__)

BusyReader = Callable[[list[tuple[TechnicianView, list[date]]]], dict[str, list[BusyBlock]]]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422)
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, errors: list[FieldError] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def _error(status: int, message: str, errors: list[FieldError] | None = None) -> JSONResponse:
    body = {
        "error": message,
        "errors": [{"field": e.field, "message": e.message} for e in errors or []],
    }
    return JSONResponse(body, status_code=status)


class EmailDirectory:
    """Platform users are matched to technicians by e-mail, the one identity every platform
    shares with our roster."""

    def __init__(self, db_url: str | None) -> None:
        self.db_url = db_url

    def technician_by_email(self, email: str) -> str | None:
        from sqlalchemy import func, select

        with session_scope(self.db_url) as session:
            return session.scalars(
                select(Technician.id).where(
                    func.lower(Technician.email) == email.strip().lower(), Technician.active
                )
            ).first()


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


_KEY_CACHE_SECONDS = 30.0
_key_cache: dict[tuple[str | None, str], tuple[float, str | None]] = {}


def _api_client(db_url: str | None, authorization: str | None) -> str | None:
    """The API client a key belongs to. Answers are cached for 30 s, so a revoked key stops
    working within 30 s, and a busy intake does not read the key table on every request."""
    token = _bearer(authorization)
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


def api_client(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    client = _api_client(request.app.state.db_url, authorization)
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


def create_app(
    *,
    db_url: str | None = None,
    sources: dict[str, WebhookSource] | None = None,
    directory: Directory | None = None,
    busy_reader: BusyReader | None = None,
    on_stored: Callable[[], None] | None = None,
    lifespan_hooks: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> FastAPI:
    """`on_stored` wakes the outbox relay; `lifespan_hooks` start and stop it with the app."""
    sources = sources or {}
    intake = Intake(db_url, on_stored=on_stored)
    people = directory or EmailDirectory(db_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything imported so far lives as long as the process: keeping it out of the
        # collector's generations spares each request a full-heap scan when one runs.
        gc.collect()
        gc.freeze()
        if lifespan_hooks:
            lifespan_hooks[0]()
        try:
            yield
        finally:
            if lifespan_hooks:
                await run_in_threadpool(lifespan_hooks[1])

    app = FastAPI(
        title="fieldsync intake",
        version="1.0",
        summary="Bookings, changes, technician status and platform webhooks in; calendars out.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.state.intake = intake
    app.state.db_url = db_url

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _validation_problems(exc)
        if any(p.message.startswith("malformed JSON") for p in problems):
            return _error(400, "the body is not valid JSON", problems)
        client = await run_in_threadpool(_api_client, db_url, request.headers.get("authorization"))
        if client is not None and request.method in ("POST", "PATCH"):
            raw = (await request.body()).decode("utf-8", "replace")
            envelope = Envelope(
                f"api:{client}",
                _event_id(request, raw),
                raw,
                route={"route": f"{request.method} {request.url.path}"},
            )
            await run_in_threadpool(intake.reject, envelope, _summary(problems))
        return _error(422, "the request is not valid: " + _summary(problems), problems)

    def submit(
        client: str,
        key: str | None,
        payload: str,
        route: str,
        commands: list[Command],
    ) -> Receipt:
        event_id = key or hashlib.sha256(f"{route}\n{payload}".encode()).hexdigest()
        envelope = Envelope(f"api:{client}", event_id, payload, route={"route": route})
        return intake.accept(envelope, lambda: commands, actor=client, check_first=False)

    @app.post(
        "/v1/appointments",
        status_code=201,
        response_model=IntakeResponse,
        responses={200: {"model": IntakeResponse}, **ERRORS},
        tags=["appointments"],
    )
    def create_appointment(
        booking: BookingRequest, client: Client, idempotency_key: IdempotencyKey = None
    ) -> Response:
        """Book a job. A repeat for the same `source` and `source_id` updates it instead."""
        receipt = submit(
            client,
            idempotency_key,
            booking.model_dump_json(),
            "POST /v1/appointments",
            [Book(booking)],
        )
        return _answer(receipt, created_status=201)

    @app.get(
        "/v1/appointments/{appointment_id}",
        tags=["appointments"],
        responses={404: {"model": ErrorResponse}, 401: {"model": ErrorResponse}},
    )
    def get_appointment(appointment_id: AppointmentId, client: Client) -> dict[str, Any]:
        with session_scope(db_url) as session:
            appt = session.get(Appointment, appointment_id)
            if appt is None:
                raise ApiError(404, f"no appointment {appointment_id!r}")
            return {
                "id": appt.id,
                "source": appt.source,
                "source_id": appt.source_id,
                "technician_id": appt.technician_id,
                "status": appt.status,
                "job_type": appt.job_type,
                "start": appt.start.isoformat(),
                "end": appt.end.isoformat(),
                "address": appt.address,
                "customer_name": appt.customer_name,
                "version": appt.version,
                "notes": appt.notes,
                "status_note": appt.status_note,
            }

    @app.patch(
        "/v1/appointments/{appointment_id}",
        response_model=IntakeResponse,
        responses=ERRORS,
        tags=["appointments"],
    )
    def modify_appointment(
        appointment_id: AppointmentId,
        change: AppointmentChange,
        client: Client,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Change any of the job's fields; omitted fields stay as they are."""
        ref = AppointmentRef(appointment_id=appointment_id)
        receipt = submit(
            client,
            idempotency_key,
            change.model_dump_json(),
            f"PATCH /v1/appointments/{appointment_id}",
            [Change(ref, change)],
        )
        return _answer(receipt)

    @app.post(
        "/v1/appointments/{appointment_id}/reschedule",
        response_model=IntakeResponse,
        responses=ERRORS,
        tags=["appointments"],
    )
    def reschedule_appointment(
        appointment_id: AppointmentId,
        request: RescheduleRequest,
        client: Client,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        change = AppointmentChange(
            start=request.start,
            end=request.end,
            duration_minutes=request.duration_minutes,
            technician_id=request.technician_id,
        )
        ref = AppointmentRef(appointment_id=appointment_id)
        receipt = submit(
            client,
            idempotency_key,
            request.model_dump_json(),
            f"POST /v1/appointments/{appointment_id}/reschedule",
            [Change(ref, change)],
        )
        return _answer(receipt)

    @app.post(
        "/v1/appointments/{appointment_id}/cancel",
        response_model=IntakeResponse,
        responses=ERRORS,
        tags=["appointments"],
    )
    def cancel_appointment(
        appointment_id: AppointmentId,
        client: Client,
        idempotency_key: IdempotencyKey = None,
        request: Annotated[CancelRequest | None, Body()] = None,
    ) -> Response:
        reason = request.reason if request else ""
        ref = AppointmentRef(appointment_id=appointment_id)
        receipt = submit(
            client,
            idempotency_key,
            reason,
            f"POST /v1/appointments/{appointment_id}/cancel",
            [Cancel(ref, reason)],
        )
        return _answer(receipt)

    def compute_options(
        appointment_id: str, request: OptionsRequest
    ) -> tuple[list[OptionOut], list[str], list[Any]]:
        notes: list[str] = []
        with session_scope(db_url) as session:
            if session.get(Appointment, appointment_id) is None:
                raise ApiError(404, f"no appointment {appointment_id!r}")
            [job] = reads.jobs_by_ids(session, [appointment_id])
            technicians = reads.select_technicians(session)
        busy = None
        if busy_reader is not None:
            day = job.start.date()
            days = [day - timedelta(days=1), day, day + timedelta(days=1)]
            busy = busy_reader([(t, days) for t in technicians])
        with session_scope(db_url) as session:
            try:
                options, more = options_for(
                    session,
                    appointment_id,
                    request.situation,
                    now=request.as_of or datetime.now(UTC),
                    new_eta=request.new_eta,
                    busy=busy,
                    limit=request.limit,
                )
            except NoOptions as exc:
                raise ApiError(422, str(exc)) from exc
        notes += more
        out = [
            OptionOut(
                rank=o.rank,
                technician_id=o.technician_id,
                appointment_id=o.job_id,
                start=o.start,
                end=o.end,
                travel_minutes=round(o.travel_minutes, 1),
                moves=[
                    {
                        "appointment_id": m.job_id,
                        "from": m.old_start.isoformat(),
                        "to": m.new_start.isoformat(),
                    }
                    for m in o.moves
                ],
                reason=o.reason,
            )
            for o in options
        ]
        return out, notes, options

    @app.post(
        "/v1/appointments/{appointment_id}/options",
        response_model=OptionsResponse,
        responses=ERRORS,
        tags=["rescheduling"],
    )
    def rescheduling_options(
        appointment_id: AppointmentId, request: OptionsRequest, client: Client
    ) -> OptionsResponse:
        """Ranked options for an emergency, a cancellation, a delay or a conflict. Each
        respects skills, shifts, travel time, existing jobs and (when readable) busy time."""
        out, notes, _ = compute_options(appointment_id, request)
        return OptionsResponse(
            appointment_id=appointment_id, situation=request.situation, options=out, notes=notes
        )

    @app.post(
        "/v1/appointments/{appointment_id}/options/{rank}/apply",
        response_model=IntakeResponse,
        responses=ERRORS,
        tags=["rescheduling"],
    )
    def apply_option(
        appointment_id: AppointmentId,
        rank: Annotated[int, Path(ge=1, le=20)],
        request: OptionsRequest,
        client: Client,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Apply option `rank` as offered now: the job and every job it moves are changed in
        the store, and each one's calendars follow through the normal sync flows."""
        _, _, options = compute_options(
            appointment_id, request.model_copy(update={"limit": max(rank, request.limit)})
        )
        chosen = next((o for o in options if o.rank == rank), None)
        if chosen is None:
            raise ApiError(422, f"there is no option {rank} for {appointment_id} any more")
        commands: list[Command] = [
            Change(AppointmentRef(appointment_id=m.job_id), AppointmentChange(start=m.new_start))
            for m in chosen.moves
        ]
        commands.append(
            Change(
                AppointmentRef(appointment_id=chosen.job_id),
                AppointmentChange(
                    technician_id=chosen.technician_id, start=chosen.start, end=chosen.end
                ),
            )
        )
        receipt = submit(
            client,
            idempotency_key,
            f"{request.model_dump_json()} option={rank} {chosen.technician_id} "
            f"{chosen.start.isoformat()}",
            f"POST /v1/appointments/{appointment_id}/options/{rank}/apply",
            commands,
        )
        return _answer(receipt)

    @app.post(
        "/v1/technicians/{technician_id}/status",
        response_model=IntakeResponse,
        responses={403: {"model": ErrorResponse}, **ERRORS},
        tags=["technicians"],
    )
    def technician_status(
        technician_id: Annotated[str, Path(min_length=1, max_length=64)],
        report: StatusRequest,
        authorization: Annotated[str | None, Header()] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """A technician's own report, authenticated with that technician's status token."""
        with session_scope(db_url) as session:
            owner = tokens.subject_of(session, "status", _bearer(authorization))
        if owner is None:
            raise ApiError(
                401, "missing or unknown technician token: send 'Authorization: Bearer <token>'"
            )
        if owner != technician_id:
            raise ApiError(403, f"this token belongs to another technician, not {technician_id}")
        payload = report.model_dump_json()
        command = StatusReport(
            report.appointment_id,
            technician_id,
            AppointmentStatus(report.status),
            eta=report.eta,
            completed_at=report.completed_at,
            note=report.note,
        )
        event_id = idempotency_key or hashlib.sha256(payload.encode()).hexdigest()
        envelope = Envelope(f"technician:{technician_id}", event_id, payload)
        return _answer(intake.accept(envelope, lambda: [command], actor="technician"))

    @app.post(
        "/webhooks/{source}",
        response_model=IntakeResponse,
        tags=["webhooks"],
        responses=ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                },
            }
        },
    )
    async def webhook(source: Annotated[str, Path(max_length=40)], request: Request) -> Response:
        """Signed webhooks from the platforms. A bad or missing signature stores nothing."""
        handler = sources.get(source)
        if handler is None:
            known = ", ".join(sorted(sources)) or "none configured"
            raise ApiError(404, f"no webhook source {source!r} (configured: {known})")
        body = await request.body()
        hook = WebhookRequest(
            {k.lower(): v for k, v in request.headers.items()}, body, datetime.now(UTC)
        )
        return await run_in_threadpool(_webhook, handler, hook)

    def _webhook(handler: WebhookSource, hook: WebhookRequest) -> Response:
        try:
            handler.verify(hook)
        except SignatureError as exc:
            raise ApiError(401, f"{handler.name} signature rejected: {exc}") from exc
        try:
            event_id = handler.event_id(hook)
        except Exception as exc:  # a body too broken to identify is a bad request
            raise ApiError(400, f"{handler.name} payload has no usable event id: {exc}") from exc
        text = hook.body.decode("utf-8", "replace")
        envelope = Envelope(
            handler.name, event_id, text, hook.header("content-type") or handler.content_type
        )
        if handler.resolves_later:
            receipt = intake.store_for_later(
                envelope, f"details are fetched from {handler.name} in the background"
            )
        else:
            receipt = intake.accept(
                envelope, lambda: handler.commands(hook, people), actor=handler.name
            )
        if receipt.state == "dead" and receipt.not_found:
            # The job is unknown here (booked before the integration, or deleted first). The
            # request is kept for replay; a 4xx would only make the platform resend it.
            receipt.notes = [f"{receipt.error}; kept in dead letters for replay"]
            receipt.state = "ignored"
        return _answer(receipt, created_status=201)

    @app.get(
        "/feeds/{token}.ics",
        tags=["feeds"],
        response_class=Response,
        responses={200: {"content": {"text/calendar": {}}}, 404: {"model": ErrorResponse}},
    )
    def ics_feed(token: Annotated[str, Path(max_length=200)]) -> Response:
        """A technician's calendar feed; the URL's token is the only credential, so it is
        long, random and revocable ('fieldsync tokens revoke feed <technician>')."""
        with session_scope(db_url) as session:
            technician_id = tokens.subject_of(session, "feed", token)
            if technician_id is None:
                raise ApiError(404, "no feed at this address")
            content = feed_for(session, technician_id)
        return Response(
            content,
            media_type="text/calendar; charset=utf-8",
            headers={"Cache-Control": "private, max-age=60"},
        )

    @app.get("/healthz", tags=["service"])
    def health() -> dict[str, Any]:
        from fieldsync.intake.relay import pending_count

        with session_scope(db_url) as session:
            waiting = pending_count(session)
        return {"status": "ok", "events_waiting": waiting}

    return app


def _answer(receipt: Receipt, *, created_status: int = 200) -> Response:
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


def _validation_problems(exc: RequestValidationError) -> list[FieldError]:
    problems: list[FieldError] = []
    for error in exc.errors():
        loc = [p for p in error.get("loc", ()) if p != "body"]
        if error.get("type") == "json_invalid":
            where = error.get("ctx", {}).get("error", "")
            problems.append(FieldError(None, f"malformed JSON: {where}".strip()))
            continue
        origin = loc[0] if loc else None
        if origin in ("header", "path", "query"):
            loc = loc[1:]
        problems.extend(_plain(error, loc))
    return problems


def _plain(error: Any, loc: list[Any]) -> list[FieldError]:
    hint, message = plain_message(error)
    field = hint or (".".join(str(p) for p in loc) if loc else None)
    return [FieldError(field, message)]


def _summary(problems: list[FieldError]) -> str:
    return "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in problems)


def _event_id(request: Request, raw: str) -> str:
    key = request.headers.get("idempotency-key")
    return key or hashlib.sha256(f"{request.method} {request.url.path}\n{raw}".encode()).hexdigest()


__all__ = ["ApiError", "create_app", "field_errors"]
