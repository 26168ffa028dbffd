"""In-memory calendars for tests: a stateful stand-in for a platform, with fault injection.

Calendars live in a named `MemoryBackend` shared by every connector built with that name in the
process, so a flow's tasks and the test that inspects the result see the same events. Like
Graph, the server picks remote ids; the idempotency key is remembered so a repeated create
returns the existing event instead of making a second one.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import ClassVar

from connectors.base import BusyBlock, CalendarConnector, RemoteEvent, RemoteRef
from connectors.errors import (
    ConnectorError,
    NotFoundError,
    NotOwnedError,
    PreconditionFailedError,
)
from fieldsync.events import CalendarEvent


class SimulatedCrash(BaseException):
    """Raised like a killed worker: not a ConnectorError, so nothing inside the push catches it."""


@dataclass
class StoredEvent:
    remote_id: str
    etag: str
    job_id: str | None
    event: CalendarEvent | None
    start: datetime
    end: datetime
    status: str = "confirmed"


@dataclass
class MemoryBackend:
    calendars: dict[str, dict[str, StoredEvent]] = field(default_factory=dict)
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (calendar, remote id)
    writes: Counter[str] = field(default_factory=Counter)  # "create"/"update"/"delete" -> count
    # Fault injection: errors raised by the next write calls, in order.
    fail_next: list[ConnectorError] = field(default_factory=list)
    # Raise SimulatedCrash after this many more successful writes (the write itself lands first).
    crash_after_writes: int | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    _etags: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def events(self, calendar_id: str) -> dict[str, StoredEvent]:
        return self.calendars.setdefault(calendar_id, {})

    def live_events(self, calendar_id: str) -> list[StoredEvent]:
        return [e for e in self.events(calendar_id).values() if e.status != "cancelled"]

    def all_events(self) -> list[StoredEvent]:
        return [e for cal in self.calendars.values() for e in cal.values()]

    def next_etag(self) -> str:
        return f'"{next(self._etags)}"'

    def plant_foreign(self, calendar_id: str, start: datetime, end: datetime) -> str:
        """A personal event we did not create (no stamp), like a dentist appointment."""
        remote_id = f"foreign-{uuid.uuid4().hex[:12]}"
        self.events(calendar_id)[remote_id] = StoredEvent(
            remote_id, self.next_etag(), None, None, start, end
        )
        return remote_id

    def before_write(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    def after_write(self, kind: str) -> None:
        self.writes[kind] += 1
        if self.crash_after_writes is not None:
            self.crash_after_writes -= 1
            if self.crash_after_writes < 0:
                self.crash_after_writes = None
                raise SimulatedCrash(f"simulated crash after a {kind}")

    def reset(self) -> None:
        with self.lock:
            self.calendars.clear()
            self.keys.clear()
            self.writes.clear()
            self.fail_next.clear()
            self.crash_after_writes = None


_backends: dict[str, MemoryBackend] = {}
_backends_lock = threading.Lock()


def backend(name: str = "default") -> MemoryBackend:
    with _backends_lock:
        return _backends.setdefault(name, MemoryBackend())


class MemoryConnector(CalendarConnector):
    platform: ClassVar[str] = "memory"
    supports_read: ClassVar[bool] = True
    supports_busy: ClassVar[bool] = True
    supports_lookup: ClassVar[bool] = True

    def __init__(self, backend_name: str = "default") -> None:
        self.backend = backend(backend_name)

    def create(self, calendar_id: str, key: str, event: CalendarEvent) -> RemoteRef:
        b = self.backend
        with b.lock:
            known = b.keys.get(key)
            if known is not None and known[1] in b.events(known[0]):
                stored = b.events(known[0])[known[1]]
                return RemoteRef(stored.remote_id, stored.etag)  # a retried create: no new event
            b.before_write()
            stored = StoredEvent(
                uuid.uuid4().hex,
                b.next_etag(),
                event.job_id,
                event,
                event.start,
                event.end,
                event.status,
            )
            b.events(calendar_id)[stored.remote_id] = stored
            b.keys[key] = (calendar_id, stored.remote_id)
            b.after_write("create")
            return RemoteRef(stored.remote_id, stored.etag)

    def _owned(self, calendar_id: str, ref: RemoteRef) -> StoredEvent:
        stored = self.backend.events(calendar_id).get(ref.remote_id)
        if stored is None:
            raise NotFoundError(
                f"event {ref.remote_id} not found", platform=self.platform, status=404
            )
        if stored.job_id is None:
            raise NotOwnedError(
                f"event {ref.remote_id} does not carry our job stamp", platform=self.platform
            )
        if ref.etag is not None and ref.etag != stored.etag:
            raise PreconditionFailedError(
                f"etag {ref.etag} is stale", platform=self.platform, status=412
            )
        return stored

    def update(self, calendar_id: str, ref: RemoteRef, event: CalendarEvent) -> RemoteRef:
        b = self.backend
        with b.lock:
            stored = self._owned(calendar_id, ref)
            b.before_write()
            stored.event, stored.start, stored.end = event, event.start, event.end
            stored.status = event.status
            stored.etag = b.next_etag()
            b.after_write("update")
            return RemoteRef(stored.remote_id, stored.etag)

    def delete(self, calendar_id: str, ref: RemoteRef) -> None:
        b = self.backend
        with b.lock:
            self._owned(calendar_id, ref)
            b.before_write()
            del b.events(calendar_id)[ref.remote_id]
            b.after_write("delete")

    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        with self.backend.lock:
            stored = self.backend.events(calendar_id).get(remote_id)
            if stored is None:
                return None
            return RemoteEvent(
                RemoteRef(stored.remote_id, stored.etag), stored.job_id, stored.event
            )

    def lookup(self, calendar_id: str, key: str) -> RemoteRef | None:
        with self.backend.lock:
            known = self.backend.keys.get(key)
            if known is None:
                return None
            stored = self.backend.events(known[0]).get(known[1])
            return None if stored is None else RemoteRef(stored.remote_id, stored.etag)

    def busy(self, calendar_id: str, start: datetime, end: datetime) -> list[BusyBlock]:
        with self.backend.lock:
            return sorted(
                (
                    BusyBlock(e.start, e.end, e.job_id)
                    for e in self.backend.live_events(calendar_id)
                    if e.start < end and e.end > start
                ),
                key=lambda blk: blk.start,
            )


def tamper(backend_: MemoryBackend, calendar_id: str, remote_id: str, summary: str) -> None:
    """Simulate an edit made by hand on the platform: content and etag change."""
    with backend_.lock:
        stored = backend_.events(calendar_id)[remote_id]
        if stored.event is not None:
            stored.event = replace(stored.event, summary=summary)
        stored.etag = backend_.next_etag()
