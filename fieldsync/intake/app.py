"""The intake HTTP service: our own JSON API, platform webhooks, technician status, ICS feeds
and rescheduling options, assembled from the routers in `fieldsync.intake.api`. Thin on
purpose: it authenticates, parses and translates; the rules live in
`fieldsync.intake.service` and the store.

Status codes: 201 created, 200 applied or already seen, 202 stored and resolved later, 400
malformed body, 401 bad credentials or signature, 403 another technician's token, 404 unknown
job or feed, 413 body over 1 MiB, 422 well-formed but invalid (dead-lettered when the sender
was authenticated).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fieldsync.intake.api import appointments, options, technicians, webhooks
from fieldsync.intake.api.common import (
    ApiError,
    BusyReader,
    IntakeState,
    client_of,
    error_response,
    request_event_id,
    summary,
    validation_problems,
)
from fieldsync.intake.body_limit import MAX_BODY_BYTES, BodyLimit
from fieldsync.intake.directory import EmailDirectory
from fieldsync.intake.relay import pending_count
from fieldsync.intake.service import Envelope, Intake
from fieldsync.intake.sources.base import Directory, WebhookSource
from fieldsync.store.db import session_scope

__all__ = ["ApiError", "EmailDirectory", "create_app"]


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
    found = IntakeState(
        intake=Intake(db_url, on_stored=on_stored),
        db_url=db_url,
        sources=sources or {},
        directory=directory or EmailDirectory(db_url),
        busy_reader=busy_reader,
    )

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
    app.state.fieldsync = found
    for module in (appointments, options, technicians, webhooks):
        app.include_router(module.router)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = validation_problems(exc)
        if any(p.message.startswith("malformed JSON") for p in problems):
            return error_response(400, "the body is not valid JSON", problems)
        client = await run_in_threadpool(client_of, db_url, request.headers.get("authorization"))
        if client is not None and request.method in ("POST", "PATCH"):
            # An authenticated sender's refused body is kept, to be replayed after a fix.
            raw = (await request.body()).decode("utf-8", "replace")
            route = f"{request.method} {request.url.path}"
            envelope = Envelope(f"api:{client}", request_event_id(request, raw), raw,
                                route={"route": route})  # fmt: skip
            await run_in_threadpool(found.intake.reject, envelope, summary(problems))
        return error_response(422, "the request is not valid: " + summary(problems), problems)

    @app.get("/healthz", tags=["service"])
    def health() -> dict[str, Any]:
        with session_scope(db_url) as session:
            waiting = pending_count(session)
        return {"status": "ok", "events_waiting": waiting}

    return app
