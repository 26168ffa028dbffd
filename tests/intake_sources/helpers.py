"""Shared bits for the webhook source tests: fixture payloads, requests, signature checks."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fieldsync.intake.sources.base import SignatureError, WebhookRequest

PAYLOADS = Path(__file__).parent / "payloads"
NOW = datetime(2026, 5, 4, 7, 12, 30, tzinfo=UTC)


def payload_bytes(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def payload(name: str) -> Any:
    return json.loads(payload_bytes(name))


def dump(data: Any) -> bytes:
    return json.dumps(data).encode()


def request(
    body: bytes, headers: Mapping[str, str] | None = None, *, at: datetime = NOW
) -> WebhookRequest:
    return WebhookRequest(
        headers={k.lower(): v for k, v in (headers or {}).items()}, body=body, received_at=at
    )


def refused(verify: Callable[[WebhookRequest], None], req: WebhookRequest, *secrets: str) -> str:
    """The SignatureError message for `req`, checked to quote none of `secrets`."""
    with pytest.raises(SignatureError) as caught:
        verify(req)
    message = str(caught.value)
    for secret in secrets:
        assert secret not in message
    return message
