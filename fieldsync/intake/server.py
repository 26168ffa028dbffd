"""The intake as deployed: the app with every configured webhook source, the outbox relay
to the Prefect API, and busy time read through the calendar connectors."""

from __future__ import annotations

import logging
from datetime import date

from fastapi import FastAPI

from connectors.base import BusyBlock
from fieldsync.busy import read_busy
from fieldsync.domain import TechnicianView
from fieldsync.intake.app import EmailDirectory, create_app
from fieldsync.intake.commands import Command
from fieldsync.intake.relay import PrefectEventsSink, Relay
from fieldsync.intake.service import Envelope, Intake
from fieldsync.intake.sources.base import WebhookRequest, WebhookSource
from fieldsync.intake.sources.registry import SourceSettings, build_sources
from fieldsync.store.tables import utcnow

log = logging.getLogger("fieldsync.intake")


def _busy(wanted: list[tuple[TechnicianView, list[date]]]) -> dict[str, list[BusyBlock]]:
    from tasks.connectors import connector_for  # needs Prefect blocks; loaded on first use

    return read_busy(wanted, connector_for, lambda message: log.warning("%s", message))


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
        # Requests stored while their platform could not be asked for details.
        def build_for(envelope: Envelope) -> list[Command]:
            source = sources[envelope.source]
            request = WebhookRequest(
                {"content-type": envelope.content_type}, envelope.body.encode(), utcnow()
            )
            return source.commands(request, directory)

        return pending.resolve_pending(build_for)

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
