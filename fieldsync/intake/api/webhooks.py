"""Signed webhooks from the platforms: verify, identify, store, then apply or resolve later."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fieldsync.intake.api.common import ERRORS, ApiError, IntakeState, State, answer
from fieldsync.intake.api_models import IntakeResponse
from fieldsync.intake.service import Envelope
from fieldsync.intake.sources.base import SignatureError, WebhookRequest, WebhookSource

router = APIRouter(tags=["webhooks"])

_ANY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
        },
    }
}


@router.post(
    "/webhooks/{source}", response_model=IntakeResponse, responses=ERRORS, openapi_extra=_ANY_BODY
)
async def webhook(
    source: Annotated[str, Path(max_length=40)], request: Request, found: State
) -> Response:
    """Signed webhooks from the platforms. A bad or missing signature stores nothing."""
    handler = found.sources.get(source)
    if handler is None:
        known = ", ".join(sorted(found.sources)) or "none configured"
        raise ApiError(404, f"no webhook source {source!r} (configured: {known})")
    body = await request.body()
    hook = WebhookRequest({k.lower(): v for k, v in request.headers.items()}, body,
                          datetime.now(UTC))  # fmt: skip
    return await run_in_threadpool(receive, found, handler, hook)


def receive(found: IntakeState, handler: WebhookSource, hook: WebhookRequest) -> Response:
    try:
        handler.verify(hook)
    except SignatureError as exc:
        raise ApiError(401, f"{handler.name} signature rejected: {exc}") from exc
    try:
        event_id = handler.event_id(hook)
    except Exception as exc:  # a body too broken to identify is a bad request
        raise ApiError(400, f"{handler.name} payload has no usable event id: {exc}") from exc
    text = hook.body.decode("utf-8", "replace")
    envelope = Envelope(handler.name, event_id, text,
                        hook.header("content-type") or handler.content_type)  # fmt: skip
    if handler.resolves_later:
        receipt = found.intake.store_for_later(
            envelope, f"details are fetched from {handler.name} in the background"
        )
    else:
        receipt = found.intake.accept(
            envelope, lambda: handler.commands(hook, found.directory), actor=handler.name
        )
    if receipt.state == "dead" and receipt.not_found:
        # The job is unknown here (booked before the integration, or deleted first). The
        # request is kept for replay; a 4xx would only make the platform resend it.
        receipt.notes = [f"{receipt.error}; kept in dead letters for replay"]
        receipt.state = "ignored"
    return answer(receipt, created_status=201)
