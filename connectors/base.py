"""The connector contract: what every platform implements.

Required: create, update, delete. Optional capabilities (reading an event back, reading busy
time) are declared as class attributes and checked once here, never in each connector.

`push()` applies a batch of operations for one calendar and reports per item; connectors with a
bulk path (a rewritten feed file, Google batch, Graph $batch) override it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from connectors.errors import (
    ConnectorError,
    NotFoundError,
    PreconditionFailedError,
    UnsupportedError,
)
from fieldsync.domain import OpKind
from fieldsync.events import CalendarEvent


@dataclass(frozen=True, slots=True)
class RemoteRef:
    remote_id: str
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteEvent:
    ref: RemoteRef
    job_id: str | None  # our stamp, None when the event is not ours
    event: CalendarEvent | None  # decoded content, when the event is ours


@dataclass(frozen=True, slots=True)
class BusyBlock:
    start: datetime
    end: datetime
    job_id: str | None = None  # set when the block is one of our own events


@dataclass(frozen=True, slots=True)
class Op:
    """One planned write. `item` identifies the ledger row the outcome belongs to."""

    item: int
    kind: OpKind
    key: str  # idempotency key, fixed in the ledger before the call
    event: CalendarEvent | None = None
    ref: RemoteRef | None = None
    # An earlier attempt of this op may have reached the platform (the ledger recorded one);
    # connectors whose create is not idempotent by itself look for its result first.
    retry: bool = False


@dataclass(frozen=True, slots=True)
class OpResult:
    item: int
    kind: OpKind
    ref: RemoteRef | None = None
    error: ConnectorError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class CalendarConnector(ABC):
    platform: ClassVar[str]
    # True where the platform keeps a cancelled event visible (delete becomes STATUS:CANCELLED).
    keeps_history: ClassVar[bool] = False
    supports_read: ClassVar[bool] = False
    supports_busy: ClassVar[bool] = False
    supports_lookup: ClassVar[bool] = False
    # How many calendars of this platform one push task may write at once.
    max_parallel_calendars: ClassVar[int] = 4

    @abstractmethod
    def create(self, calendar_id: str, key: str, event: CalendarEvent) -> RemoteRef:
        """Create the event. A repeated call with the same key must not make a second event."""

    @abstractmethod
    def update(self, calendar_id: str, ref: RemoteRef, event: CalendarEvent) -> RemoteRef:
        """Replace the event's content. A stale etag raises PreconditionFailedError."""

    @abstractmethod
    def delete(self, calendar_id: str, ref: RemoteRef) -> None:
        """Remove (or cancel, where the platform keeps history). Gone already: NotFoundError."""

    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        raise UnsupportedError("reading events back is not supported", platform=self.platform)

    def busy(self, calendar_id: str, start: datetime, end: datetime) -> list[BusyBlock]:
        raise UnsupportedError("reading busy time is not supported", platform=self.platform)

    def lookup(self, calendar_id: str, key: str) -> RemoteRef | None:
        """Find the event an earlier create with this idempotency key made, if it exists."""
        raise UnsupportedError("finding events by key is not supported", platform=self.platform)

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op for connectors without I/O
        """Release connections; connectors holding none need not override."""

    def push(self, calendar_id: str, ops: Sequence[Op]) -> list[OpResult]:
        return [self.apply_one(calendar_id, op) for op in ops]

    def apply_one(self, calendar_id: str, op: Op) -> OpResult:
        """One operation with the shared outcome rules; ConnectorErrors become results."""
        try:
            if op.kind is OpKind.CREATE:
                assert op.event is not None
                return OpResult(op.item, op.kind, self.create(calendar_id, op.key, op.event))
            ref = op.ref
            if ref is None:
                # The create's outcome was never recorded (a crash): find what it made, if anything.
                found = self.lookup(calendar_id, op.key)
                if found is None:
                    if op.kind is OpKind.DELETE:
                        return OpResult(op.item, op.kind)
                    raise NotFoundError(f"no event for key {op.key}", platform=self.platform)
                ref = found
                op = Op(op.item, op.kind, op.key, op.event, found, op.retry)
            if op.kind is OpKind.UPDATE:
                assert op.event is not None
                return OpResult(op.item, op.kind, self._update_reconciling(calendar_id, op))
            with suppress(NotFoundError):  # already gone: the delete is done
                self.delete(calendar_id, ref)

            return OpResult(op.item, op.kind, op.ref)
        except ConnectorError as exc:
            return OpResult(op.item, op.kind, op.ref, error=exc)

    def _update_reconciling(self, calendar_id: str, op: Op) -> RemoteRef:
        assert op.ref is not None and op.event is not None
        try:
            return self.update(calendar_id, op.ref, op.event)
        except PreconditionFailedError:
            # Someone changed the event since our last write. Re-read it; if it is still ours,
            # our content wins (the ledger is the source of truth for jobs we own).
            if not self.supports_read:
                raise
            current = self.read(calendar_id, op.ref.remote_id)
            if current is None:
                raise NotFoundError(
                    f"event {op.ref.remote_id} vanished during update", platform=self.platform
                ) from None
            return self.update(calendar_id, current.ref, op.event)
