"""The planner's rules as plain functions: no store, no Prefect."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fieldsync.domain import BindingView, LedgerState, OpKind
from fieldsync.sync.model import LedgerRow, SyncItem
from fieldsync.sync.planner import (
    MassDeletionBlocked,
    check_mass_deletion,
    decide,
    idempotency_key,
    plan,
)
from tests.contract.connector_contract import sample_event

B1 = BindingView(1, "T1", "memory", "cal-1")
B2 = BindingView(2, "T2", "memory", "cal-2")
EVENT = sample_event("J-1")


def row(
    state: str = LedgerState.SYNCED,
    *,
    binding: int = 1,
    remote: str | None = "r1",
    content: str | None = None,
    generation: int = 1,
    rid: int = 10,
) -> LedgerRow:
    return LedgerRow(
        rid,
        "J-1",
        binding,
        "memory",
        generation,
        idempotency_key("J-1", binding, generation),
        remote,
        '"1"',
        EVENT.content_hash() if content is None else content,
        state,
        None,
        1,
    )


@pytest.mark.parametrize(
    ("ledger", "event", "expected"),
    [
        (None, EVENT, OpKind.CREATE),
        (row(), EVENT, None),
        (row(content="stale"), EVENT, OpKind.UPDATE),
        (row(LedgerState.FAILED), EVENT, OpKind.UPDATE),
        (row(LedgerState.PENDING, remote=None), EVENT, OpKind.CREATE),
        (row(LedgerState.DELETED), EVENT, OpKind.CREATE),
        (None, None, None),
        (row(), None, OpKind.DELETE),
        (row(LedgerState.PENDING, remote=None), None, OpKind.DELETE),
        (row(LedgerState.DELETED), None, None),
    ],
)
def test_decide(ledger: LedgerRow | None, event, expected) -> None:
    assert decide(ledger, event) is expected


def test_content_hash_ignores_nothing_a_technician_sees() -> None:
    assert EVENT.content_hash() == sample_event("J-1").content_hash()
    assert EVENT.content_hash() != replace(EVENT, location="elsewhere").content_hash()
    assert EVENT.content_hash() != replace(EVENT, status="tentative").content_hash()


def test_recreate_after_delete_gets_a_new_generation_and_key() -> None:
    planned = plan([SyncItem("J-1", 2, ((B1, EVENT),))], [row(LedgerState.DELETED)], {1: B1})
    [op] = planned.ops
    assert op.kind is OpKind.CREATE and op.generation == 2
    assert op.key == idempotency_key("J-1", 1, 2)


def test_retried_create_keeps_its_key() -> None:
    pending = row(LedgerState.PENDING, remote=None)
    [op] = plan([SyncItem("J-1", 1, ((B1, EVENT),))], [pending], {1: B1}).ops
    assert op.key == pending.idempotency_key and op.row_id == pending.id


def test_reassignment_plans_delete_on_old_and_create_on_new() -> None:
    planned = plan([SyncItem("J-1", 3, ((B2, EVENT),))], [row()], {1: B1, 2: B2})
    assert {(op.kind, op.binding.id) for op in planned.ops} == {
        (OpKind.DELETE, 1),
        (OpKind.CREATE, 2),
    }


def test_platform_filter_only_plans_that_platform() -> None:
    ics = BindingView(3, "T1", "ics", "T1")
    planned = plan([SyncItem("J-1", 1, ((B1, EVENT), (ics, EVENT)))], [], {}, platform="ics")
    assert [op.binding.platform for op in planned.ops] == ["ics"]


def _deletes(n: int):
    items = [SyncItem(f"J-{i}", 1) for i in range(n)]
    rows = [replace(row(), id=i, appointment_id=f"J-{i}") for i in range(n)]
    return plan(items, rows, {1: B1})


def test_mass_deletion_guard() -> None:
    with pytest.raises(MassDeletionBlocked, match="3 of 4 events"):
        check_mass_deletion(_deletes(3), {1: 4}, minimum=3, force=False)
    check_mass_deletion(_deletes(3), {1: 4}, minimum=3, force=True)
    check_mass_deletion(_deletes(3), {1: 6}, minimum=3, force=False)  # exactly half: allowed
    check_mass_deletion(_deletes(2), {1: 2}, minimum=3, force=False)  # one cancel is no mass
