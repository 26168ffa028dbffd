"""Requests on one event: read it back, check it is ours, PATCH it, DELETE it.

Shared by the connector's contract methods and by push()'s handling of 412 conflicts. Events
without our job stamp are never changed: a write without an etag first reads the event's stamp
(NotOwnedError when absent); with an etag, If-Match proves the event is as we left it.
"""

from __future__ import annotations

import logging

from connectors.base import RemoteEvent, RemoteRef
from connectors.errors import ConnectorError, NotFoundError, NotOwnedError
from connectors.msgraph.endpoints import PLATFORM
from connectors.msgraph.mapping import (
    DATA_PROPERTY,
    JOB_PROPERTY,
    KEY_PROPERTY,
    PREFER_UTC_TEXT,
    decode_event,
    event_fields,
    extended_properties,
    remote_ref,
)
from connectors.msgraph.session import GraphSession, json_object
from connectors.msgraph.urls import Target, expand_properties, with_query
from fieldsync.events import CalendarEvent

# Records keep the logger name they had before the package split, so log filters still match.
log = logging.getLogger("connectors.graph")


def owned_ref(session: GraphSession, target: Target, remote_id: str) -> RemoteRef:
    """The event's current ref, after checking it carries our stamp."""
    url = with_query(
        target.event(remote_id), {"$select": "id", "$expand": expand_properties(JOB_PROPERTY)}
    )
    body = json_object(session.call(target, "GET", url), "GET event")
    if not extended_properties(body).get(JOB_PROPERTY):
        raise NotOwnedError(
            f"event {remote_id} does not carry our job stamp; it is never changed",
            platform=PLATFORM,
        )
    return remote_ref(body, "GET event")


def patch_event(
    session: GraphSession,
    target: Target,
    ref: RemoteRef,
    event: CalendarEvent,
    reminder_minutes: int | None,
) -> RemoteRef:
    headers = {"Prefer": PREFER_UTC_TEXT}
    if ref.etag:
        headers["If-Match"] = ref.etag
    resp = session.call(
        target,
        "PATCH",
        target.event(ref.remote_id),
        json=event_fields(event, reminder_minutes),
        headers=headers,
    )
    return remote_ref(json_object(resp, "PATCH event"), "PATCH event")


def delete_exact(session: GraphSession, target: Target, ref: RemoteRef) -> None:
    """DELETE the event, If-Match its etag when we have one."""
    headers = {"If-Match": ref.etag} if ref.etag else {}
    session.call(target, "DELETE", target.event(ref.remote_id), headers=headers)


def read_event(session: GraphSession, target: Target, remote_id: str) -> RemoteEvent | None:
    url = with_query(
        target.event(remote_id),
        {"$expand": expand_properties(JOB_PROPERTY, KEY_PROPERTY, DATA_PROPERTY)},
    )
    try:
        resp = session.call(target, "GET", url, headers={"Prefer": PREFER_UTC_TEXT})
    except NotFoundError:
        return None
    body = json_object(resp, "GET event")
    ref = remote_ref(body, "GET event")
    props = extended_properties(body)
    job_id = props.get(JOB_PROPERTY) or None
    if job_id is None:
        return RemoteEvent(ref, None, None)
    try:
        event: CalendarEvent | None = decode_event(job_id, body, props.get(DATA_PROPERTY))
    except (ConnectorError, ValueError, TypeError, KeyError) as exc:
        log.warning(
            "%s: event %s carries our stamp but cannot be decoded: %s", PLATFORM, remote_id, exc
        )
        event = None
    return RemoteEvent(ref, job_id, event)
