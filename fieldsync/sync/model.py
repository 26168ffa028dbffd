"""What the planner consumes and produces."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fieldsync.domain import BindingView, OpKind
from fieldsync.events import CalendarEvent


@dataclass(frozen=True, slots=True)
class SyncItem:
    """One appointment and where it should appear now: each binding of its current technician.

    `placements` is empty when the job should be on no calendar (canceled, unassigned). Ledger
    rows on bindings not listed here are removed: that is how reassignment and cancel work.
    """

    appointment_id: str
    version: int
    placements: tuple[tuple[BindingView, CalendarEvent], ...] = ()


@dataclass(frozen=True, slots=True)
class LedgerRow:
    id: int
    appointment_id: str
    binding_id: int
    platform: str
    generation: int
    idempotency_key: str
    remote_id: str | None
    etag: str | None
    content_hash: str | None
    state: str
    pending_op: str | None
    attempts: int
    pushed_version: int | None = None  # the appointment version last written (or deleted)


@dataclass(frozen=True, slots=True)
class PlannedOp:
    kind: OpKind
    appointment_id: str
    binding: BindingView
    key: str
    generation: int
    row_id: int | None  # None: the ledger row is created when the op is reserved
    event: CalendarEvent | None
    version: int
    remote_id: str | None = None
    etag: str | None = None
    attempts: int = 0  # attempts recorded so far on the ledger row


@dataclass
class Plan:
    ops: list[PlannedOp] = field(default_factory=list)
    unchanged_by_platform: Counter[str] = field(default_factory=Counter)
    stale: int = 0  # items skipped because a newer version is already on the calendar

    @property
    def unchanged(self) -> int:
        return self.unchanged_by_platform.total()

    def count(self, kind: OpKind) -> int:
        return sum(1 for op in self.ops if op.kind is kind)

    def platforms(self) -> set[str]:
        """Every platform the items touch, including those with nothing to write (their push
        task then reports the unchanged count, so ops see that they were checked)."""
        return {op.binding.platform for op in self.ops} | set(self.unchanged_by_platform)


@dataclass
class PushReport:
    platform: str
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    transient_failures: int = 0
    stale: int = 0  # skipped: a newer version of the job was already pushed by another run

    @property
    def writes(self) -> int:
        return self.created + self.updated + self.deleted
