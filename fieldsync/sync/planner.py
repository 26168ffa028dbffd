"""Pure decisions: given what should be on each calendar and what the ledger says is there,
which write (if any) brings the two together. No I/O here, so every rule is easy to test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from fieldsync.domain import BindingView, LedgerState, OpKind
from fieldsync.events import CalendarEvent
from fieldsync.sync.model import LedgerRow, Plan, PlannedOp, SyncItem


def idempotency_key(appointment_id: str, binding_id: int, generation: int) -> str:
    """Fixed before the create call, so a retried create is recognised as the same create."""
    return f"fs-{appointment_id}-b{binding_id}-g{generation}"


def decide(row: LedgerRow | None, event: CalendarEvent | None) -> OpKind | None:
    if event is None:
        if row is None or row.state == LedgerState.DELETED:
            return None
        return OpKind.DELETE
    if row is None or row.state == LedgerState.DELETED:
        return OpKind.CREATE
    if row.remote_id is None:
        return OpKind.CREATE  # an earlier create's outcome is unknown: repeat it, same key
    if row.state == LedgerState.SYNCED and row.content_hash == event.content_hash():
        return None
    return OpKind.UPDATE


def plan(
    items: Iterable[SyncItem],
    rows: Iterable[LedgerRow],
    bindings: Mapping[int, BindingView],
    *,
    platform: str | None = None,
) -> Plan:
    """Every (appointment, binding) pair either wanted now or known to the ledger gets a verdict.

    `bindings` must hold every binding referenced by a ledger row (old technicians' too).
    """
    by_pair: dict[tuple[str, int], LedgerRow] = {}
    known_by_appointment: dict[str, set[int]] = {}
    for r in rows:
        by_pair[(r.appointment_id, r.binding_id)] = r
        known_by_appointment.setdefault(r.appointment_id, set()).add(r.binding_id)
    result = Plan()
    for item in items:
        wanted: dict[int, tuple[BindingView, CalendarEvent]] = {
            b.id: (b, ev) for b, ev in item.placements
        }
        known = known_by_appointment.get(item.appointment_id, set())
        for binding_id in sorted(set(wanted) | known):
            binding, event = wanted.get(binding_id, (bindings.get(binding_id), None))
            if binding is None:
                raise KeyError(f"ledger references unknown calendar binding {binding_id}")
            if platform is not None and binding.platform != platform:
                continue
            row = by_pair.get((item.appointment_id, binding_id))
            if (
                row is not None
                and row.pushed_version is not None
                and item.version < row.pushed_version
            ):
                # A newer version of the job already reached this calendar (another run, or
                # another worker, got there first): writing this older one would undo it.
                result.stale += 1
                continue
            kind = decide(row, event)
            if kind is None:
                if event is not None:  # absent and already gone is not worth reporting
                    result.unchanged_by_platform[binding.platform] += 1
                continue
            generation = row.generation if row else 1
            key = (
                row.idempotency_key
                if row
                else idempotency_key(item.appointment_id, binding_id, generation)
            )
            if kind is OpKind.CREATE and row is not None and row.state == LedgerState.DELETED:
                # The old event is gone; a re-created one needs a new identity on the platform.
                generation = row.generation + 1
                key = idempotency_key(item.appointment_id, binding_id, generation)
            result.ops.append(
                PlannedOp(
                    kind=kind,
                    appointment_id=item.appointment_id,
                    binding=binding,
                    key=key,
                    generation=generation,
                    row_id=row.id if row else None,
                    event=event,
                    version=item.version,
                    remote_id=row.remote_id if row else None,
                    etag=row.etag if row else None,
                    attempts=row.attempts if row else 0,
                )
            )
    return result


class MassDeletionBlocked(RuntimeError):
    """A run would delete most of a technician's events: likely a bad import, not intent."""


def check_mass_deletion(
    planned: Plan, live_counts: Mapping[int, int], *, minimum: int, force: bool
) -> None:
    if force:
        return
    deletes = Counter(op.binding.id for op in planned.ops if op.kind is OpKind.DELETE)
    offenders = []
    for binding_id, n in sorted(deletes.items()):
        live = live_counts.get(binding_id, 0)
        if n >= minimum and n * 2 > live:
            b = next(op.binding for op in planned.ops if op.binding.id == binding_id)
            offenders.append(
                f"technician {b.technician_id} on {b.platform}:{b.calendar_id} "
                f"({n} of {live} events)"
            )
    if offenders:
        raise MassDeletionBlocked(
            "stopped before writing anything: this run would delete more than half of the "
            "events of " + "; ".join(offenders) + ". If that is intended, re-run with force=True."
        )
