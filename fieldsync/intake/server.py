"""The intake as deployed: the app with every configured webhook source, the outbox relay
to the Prefect API, and busy time read through the calendar connectors."""

from __future__ import annotations

import logging
from datetime import date

from fastapi import FastAPI

from connectors.base import BusyBlock
from fieldsync.busy import read_busy
from fieldsync.domain import TechnicianView
from fieldsync.intake.app import create_app
from fieldsync.intake.commands import Command
from fieldsync.intake.directory import EmailDirectory
from fieldsync.intake.relay import PrefectEventsSink, Relay
from fieldsync.intake.service import Envelope, Intake, Receipt
from fieldsync.intake.sources.base import (
    Directory,
    PayloadError,
    WebhookRequest,
    WebhookSource,
)
from fieldsync.intake.sources.registry import SourceSettings, build_sources
from fieldsync.intake.stored_requests import api_commands, status_commands
from fieldsync.store.tables import utcnow

log = logging.getLogger("fieldsync.intake")


def _busy(wanted: list[tuple[TechnicianView, list[date]]]) -> dict[str, list[BusyBlock]]:
    from tasks.connectors import connector_for  # needs Prefect blocks; loaded on first use

    return read_busy(wanted, connector_for, lambda message: log.warning("%s", message))


def commands_for(
    envelope: Envelope, sources: dict[str, WebhookSource], directory: Directory
) -> list[Command]:
    """The commands of a stored request, whatever its origin: a platform webhook (verified
    when it arrived), our own API, or a technician's status report."""
    if envelope.source.startswith("api:"):
        return api_commands(envelope.route.get("route", ""), envelope.body)
    if envelope.source.startswith("technician:"):
        return status_commands(envelope.source.split(":", 1)[1], envelope.body)
    source = sources.get(envelope.source)
    if source is None:
        raise PayloadError(
            f"webhook source {envelope.source!r} is not configured here; set its secret first"
        )
    request = WebhookRequest({"content-type": envelope.content_type}, envelope.body.encode(),
                             utcnow())  # fmt: skip
    return source.commands(request, directory)


def build_app(
    db_url: str | None = None,
    *,
    sources: dict[str, WebhookSource] | None = None,
    relay_interval: float = 2.0,
) -> FastAPI:
    sources = build_sources(SourceSettings.from_env()) if sources is None else sources
    directory = EmailDirectory(db_url)
    pending = Intake(db_url)

    def resolve() -> int:
        # Requests stored for their details to be fetched from the platform.
        return pending.resolve_pending(lambda e: commands_for(e, sources, directory))

    relay = Relay(
        PrefectEventsSink.from_prefect_settings(),
        db_url=db_url,
        interval=relay_interval,
        resolve=resolve,
    )
    pending.on_stored = relay.wake
    return create_app(
        db_url=db_url,
        sources=sources,
        directory=directory,
        busy_reader=_busy,
        on_stored=relay.wake,
        lifespan_hooks=(relay.start, relay.stop),
    )


def replay(letter_ids: list[int], db_url: str | None = None) -> list[tuple[int, Receipt]]:
    """Replay intake dead letters; their events wait in the outbox for the running relay."""
    sources = build_sources(SourceSettings.from_env())
    directory = EmailDirectory(db_url)
    intake = Intake(db_url)
    return [
        (i, intake.replay(i, lambda e: commands_for(e, sources, directory))) for i in letter_ids
    ]
