"""The naive baseline: one Prefect task per event, each doing its own plan, push and record."""

from __future__ import annotations

from datetime import date

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from fieldsync.pipeline import load_enrichment
from fieldsync.shifts import shift_job_ids
from fieldsync.store.db import session_scope
from fieldsync.sync import executor
from fieldsync.sync.items import sync_items
from fieldsync.sync.model import SyncItem
from tasks.connectors import connector_for


@task(cache_policy=NO_CACHE)
def push_one(platform: str, item: SyncItem) -> int:
    return executor.push_platform(platform, [item], connector_for).writes


@flow(name="naive-shift-start")
def naive_shift_sync(day: date) -> int:
    with session_scope() as session:
        ids = shift_job_ids(session, day)
    items = sync_items(load_enrichment(ids, whole_days=True).targets)
    futures = [
        push_one.submit(
            binding.platform, SyncItem(item.appointment_id, item.version, ((binding, event),))
        )
        for item in items
        for binding, event in item.placements
    ]
    return sum(f.result() for f in futures)
