"""The contract every webhook source implements: verify, identify, translate.

A source never touches the store. The intake service calls, in order:

1. `verify(request)`: raises `SignatureError` (answered 401, nothing stored) when the request
   is not provably from the platform: missing or malformed signature header, wrong signature,
   a timestamp outside the replay window.
2. `event_id(request)`: the platform's own id for this delivery's event, stable across
   redeliveries; storage is idempotent on (source, event id).
3. `commands(request)`: what the event asks for. Raises `PayloadError` (answered 422, the raw
   body is dead-lettered for replay after a fix) when the body is well-signed but unusable,
   or `UpstreamUnavailable` when details must be fetched from the platform and it does not
   answer (the request is stored and resolved later; nothing is lost).
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol

from fieldsync.inputs import FieldError
from fieldsync.intake.commands import Command


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    received_at: datetime  # timezone-aware UTC; replay windows are measured against it

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class SignatureError(Exception):
    """The request cannot be shown to come from the platform. The message says why, without
    echoing any secret or the expected signature."""


class PayloadError(Exception):
    """Well-signed, but the content cannot become a job. Each error names its field."""

    def __init__(self, errors: Sequence[FieldError] | str) -> None:
        self.errors = [FieldError(None, errors)] if isinstance(errors, str) else list(errors)
        super().__init__(
            "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in self.errors)
        )


class UpstreamUnavailable(Exception):
    """Details had to be fetched from the platform, and it did not answer. Retry later."""


class Directory(Protocol):
    """What a source may ask about our technicians, to map platform users onto them."""

    def technician_by_email(self, email: str) -> str | None: ...


@dataclass
class StaticDirectory:
    """A Directory from a plain mapping; tests and single-tenant setups use it."""

    by_email: dict[str, str] = field(default_factory=dict)

    def technician_by_email(self, email: str) -> str | None:
        return self.by_email.get(email.strip().lower())


class WebhookSource(ABC):
    name: ClassVar[str]  # the path segment (/webhooks/<name>) and the appointments' source
    content_type: ClassVar[str] = "application/json"
    # Sources whose `commands` must ask the platform's API for the details. The intake stores
    # their request and answers at once, then resolves it in the background: the platform's
    # API being slow or down must not fail the delivery (Jobber wants an answer within 1 s).
    resolves_later: ClassVar[bool] = False

    @abstractmethod
    def verify(self, request: WebhookRequest) -> None: ...

    @abstractmethod
    def event_id(self, request: WebhookRequest) -> str: ...

    @abstractmethod
    def commands(self, request: WebhookRequest, directory: Directory) -> list[Command]: ...


def signatures_match(expected: str | bytes, given: str | bytes) -> bool:
    """Constant-time comparison, so response timing cannot leak the expected signature."""
    a = expected.encode() if isinstance(expected, str) else expected
    b = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(a, b)
