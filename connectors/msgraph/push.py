"""How push() writes many events of one calendar through `$batch`, with the per-item rules.

Events the ledger has no etag for are read first (batched) and only those with our job stamp go
on to be written. Writes go out batched; a delete of a missing event is done; a 412 re-reads the
event and, if it is still ours, our content (or delete) wins. Every op ends as one OpResult.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

from connectors.base import Op, OpResult, RemoteRef
from connectors.errors import (
    ConnectorError,
    NotFoundError,
    NotOwnedError,
    PreconditionFailedError,
)
from connectors.msgraph.batch import SubRequest, outcome, run_batch
from connectors.msgraph.endpoints import PLATFORM
from connectors.msgraph.events import delete_exact, patch_event, read_event
from connectors.msgraph.mapping import (
    JOB_PROPERTY,
    PREFER_UTC_TEXT,
    create_body,
    event_fields,
    extended_properties,
    remote_ref,
)
from connectors.msgraph.session import GraphSession
from connectors.msgraph.urls import Target, expand_properties, with_query
from fieldsync.domain import OpKind


def verify_ownership(
    session: GraphSession,
    target: Target,
    ops: Sequence[Op],
    verify: Sequence[int],
    refs: dict[int, RemoteRef],
    results: dict[int, OpResult],
    write: list[int],
) -> None:
    """Read the stamp of events we have no etag for; only ours go on to be written."""
    subs = []
    for p in verify:
        ref = ops[p].ref
        assert ref is not None
        url = with_query(
            target.event(ref.remote_id),
            {"$select": "id", "$expand": expand_properties(JOB_PROPERTY)},
        )
        subs.append(SubRequest(p, "GET", url))
    replies = run_batch(session, target, subs)
    for sub in subs:
        op = ops[sub.pos]
        result = outcome(session, sub, replies[sub.pos])
        if isinstance(result, NotFoundError) and op.kind is OpKind.DELETE:
            results[sub.pos] = OpResult(op.item, op.kind, op.ref)
        elif isinstance(result, ConnectorError):
            results[sub.pos] = OpResult(op.item, op.kind, op.ref, error=result)
        elif not extended_properties(result).get(JOB_PROPERTY):
            remote_id = op.ref.remote_id if op.ref is not None else "?"
            error = NotOwnedError(
                f"event {remote_id} does not carry our job stamp; it is never changed",
                platform=PLATFORM,
            )
            results[sub.pos] = OpResult(op.item, op.kind, op.ref, error=error)
        else:
            try:
                refs[sub.pos] = remote_ref(result, "GET event")
            except ConnectorError as exc:
                results[sub.pos] = OpResult(op.item, op.kind, op.ref, error=exc)
            else:
                write.append(sub.pos)


def write_batched(
    session: GraphSession,
    target: Target,
    ops: Sequence[Op],
    write: Sequence[int],
    refs: dict[int, RemoteRef],
    results: dict[int, OpResult],
    reminder_minutes: int | None,
) -> None:
    """POST, PATCH or DELETE each op in `write` through $batch; 412s are reconciled one by one."""
    subs = []
    for p in write:
        op, ref = ops[p], refs.get(p)
        if op.kind is OpKind.CREATE and ref is None:
            assert op.event is not None
            body = create_body(op.key, op.event, reminder_minutes)
            subs.append(SubRequest(p, "POST", target.events, body, {"Prefer": PREFER_UTC_TEXT}))
            continue
        assert ref is not None
        headers = {"If-Match": ref.etag} if ref.etag else {}
        if op.kind is OpKind.DELETE:
            subs.append(SubRequest(p, "DELETE", target.event(ref.remote_id), None, headers))
        else:
            assert op.event is not None
            headers["Prefer"] = PREFER_UTC_TEXT
            url = target.event(ref.remote_id)
            fields = event_fields(op.event, reminder_minutes)
            subs.append(SubRequest(p, "PATCH", url, fields, headers))
    replies = run_batch(session, target, subs)
    conflicts: list[int] = []
    for sub in subs:
        op = ops[sub.pos]
        result = outcome(session, sub, replies[sub.pos])
        if isinstance(result, PreconditionFailedError) and sub.method != "POST":
            conflicts.append(sub.pos)
        elif isinstance(result, NotFoundError) and op.kind is OpKind.DELETE:
            results[sub.pos] = OpResult(op.item, op.kind, op.ref)  # gone already: done
        elif isinstance(result, ConnectorError):
            results[sub.pos] = OpResult(op.item, op.kind, op.ref, error=result)
        elif op.kind is OpKind.DELETE:
            results[sub.pos] = OpResult(op.item, op.kind, op.ref)
        else:
            try:
                results[sub.pos] = OpResult(op.item, op.kind, remote_ref(result, sub.method))
            except ConnectorError as exc:
                results[sub.pos] = OpResult(op.item, op.kind, op.ref, error=exc)
    for p in conflicts:
        results[p] = _reconcile(session, target, ops[p], refs[p], reminder_minutes)


def _reconcile(
    session: GraphSession, target: Target, op: Op, ref: RemoteRef, reminder_minutes: int | None
) -> OpResult:
    """After a 412: re-read; if the event is still ours, our content (or delete) wins."""
    try:
        current = read_event(session, target, ref.remote_id)
        if current is None:
            if op.kind is OpKind.DELETE:
                return OpResult(op.item, op.kind, op.ref)
            raise NotFoundError(f"event {ref.remote_id} vanished during update", platform=PLATFORM)
        if current.job_id is None:
            raise NotOwnedError(
                f"event {ref.remote_id} no longer carries our job stamp", platform=PLATFORM
            )
        if op.kind is OpKind.DELETE:
            with suppress(NotFoundError):
                delete_exact(session, target, current.ref)
            return OpResult(op.item, op.kind, op.ref)
        assert op.event is not None
        patched = patch_event(session, target, current.ref, op.event, reminder_minutes)
        return OpResult(op.item, op.kind, patched)
    except ConnectorError as exc:
        return OpResult(op.item, op.kind, op.ref, error=exc)
