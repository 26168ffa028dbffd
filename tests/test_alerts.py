"""Conflict alerts through Slack (a stateful fake behind the real client), email (a real
aiosmtpd server) and a generic webhook (a real loopback HTTP server), once per conflict."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from blocks.notifications import WebhookAlerts
from connectors.errors import AuthError, PermanentError
from connectors.memory import MemoryBackend
from connectors.notifiers import EmailNotifier, SlackNotifier
from fieldsync.alerts import Alert, conflict_alert
from fieldsync.conflicts import ConflictFinding
from fieldsync.store.changes import AppointmentChange
from fieldsync.store.db import session_scope
from flows.booked import appointment_booked
from flows.modified import appointment_modified
from tests.factories import DAY, add_appointment, add_job_type, add_technician

FINDING = ConflictFinding(
    "T-104", "overlap", "critical", ("J-1", "J-2"), "J-1 (11:55-12:40) overlaps J-2 (12:15-13:00)"
)
ALERT = conflict_alert(FINDING, options=("Move J-2 to Maria Gonzalez at 13:30 (12 min drive)",))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Slack -------------------------------------------------------------------------------------


class FakeSlack:
    """chat.postMessage as Slack documents it: HTTP 200 with ok true/false, 429 when rate
    limited."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.posted: list[dict[str, Any]] = []
        self.rate_limit_next = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/api/chat.postMessage":
            return httpx.Response(404, json={"ok": False, "error": "unknown_method"})
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            return httpx.Response(429, headers={"Retry-After": "1"})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return httpx.Response(200, json={"ok": False, "error": "invalid_auth"})
        body = json.loads(request.content)
        if body.get("channel") != "#dispatch":
            return httpx.Response(200, json={"ok": False, "error": "channel_not_found"})
        self.posted.append(body)
        return httpx.Response(200, json={"ok": True, "ts": f"{len(self.posted)}.0001"})


def _slack(fake: FakeSlack, token: str, channel: str = "#dispatch") -> SlackNotifier:
    client = httpx.Client(base_url="https://slack.test/api", transport=httpx.MockTransport(fake))
    return SlackNotifier(token, channel, client=client)


def test_slack_posts_a_readable_message_with_the_options() -> None:
    fake = FakeSlack("xoxb-good")
    fake.rate_limit_next = 1  # the first try is throttled, the retry lands
    _slack(fake, "xoxb-good").send(ALERT)
    [posted] = fake.posted
    text = posted["blocks"][0]["text"]["text"]
    assert "Double-booking for technician T-104" in text
    assert "1. Move J-2 to Maria Gonzalez at 13:30" in text
    assert "overlaps" in posted["text"]


def test_slack_refusals_are_clear_and_keep_the_token_out() -> None:
    fake = FakeSlack("xoxb-good")
    with pytest.raises(AuthError, match="invalid_auth") as bad_token:
        _slack(fake, "xoxb-wrong-secret-token").send(ALERT)
    assert "xoxb-wrong-secret-token" not in str(bad_token.value)
    with pytest.raises(PermanentError, match="channel_not_found"):
        _slack(fake, "xoxb-good", channel="#nowhere").send(ALERT)


# --- email -------------------------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def test_email_alert_reaches_a_real_smtp_server(smtp_server: tuple[int, _Inbox]) -> None:
    port, inbox = smtp_server
    notifier = EmailNotifier(
        "127.0.0.1", port, "fieldsync@acme.example", ["dispatch@acme.example"], starttls=False
    )
    notifier.send(ALERT)
    [(sender, recipients, raw)] = inbox.messages
    assert sender == "fieldsync@acme.example" and recipients == ["dispatch@acme.example"]
    message = message_from_bytes(raw)
    assert message["Subject"] == "[fieldsync critical] Double-booking for technician T-104"
    body = message.get_payload()
    assert isinstance(body, str)
    assert "overlaps" in body and "1. Move J-2" in body and "J-1, J-2" in body


def test_email_to_a_closed_port_is_transient() -> None:
    notifier = EmailNotifier("127.0.0.1", _free_port(), "a@b.c", ["d@e.f"], starttls=False)
    with pytest.raises(Exception) as failure:
        notifier.send(ALERT)
    assert getattr(failure.value, "retryable", False)


# --- webhook, through the real flows -----------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    failing: list[bool]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.failing[0]:
            self.send_response(500)
            self.end_headers()
            return
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]], list[bool]]]:
    received: list[dict[str, Any]] = []
    failing = [False]
    handler = type("Hook", (_Hook,), {"received": received, "failing": failing})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/catch/123", received, failing
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.usefixtures("prefect_harness")
def test_each_conflict_alerts_once_and_again_only_when_it_changes(
    sqlite_url: str,
    memory_calendars: MemoryBackend,
    hook: tuple[str, list[dict[str, Any]], list[bool]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, received, failing = hook
    WebhookAlerts(url=SecretStr(url)).save("zapier-test", overwrite=True)
    monkeypatch.setenv("FIELDSYNC_ALERT_BLOCKS", "fieldsync-webhook-alerts/zapier-test")
    with session_scope(sqlite_url) as s:
        add_job_type(s)
        add_technician(s, "T9")
        first = add_appointment(s, "T9", hour=9).id
        second = add_appointment(s, "T9", hour=9.5).id

    failing[0] = True  # the channel is down: the alert is owed, not lost
    appointment_booked(first)
    assert received == []
    failing[0] = False
    appointment_booked(second)
    assert [p["appointment_ids"] for p in received] == [[first, second]]
    assert received[0]["severity"] == "critical"
    # The alert carries concrete ways out, e.g. moving one job later the same day.
    assert received[0]["options"] and any(t in received[0]["options"][0] for t in (first, second))

    appointment_booked(first)  # the same conflict again: no second alert
    assert len(received) == 1

    # It changes (new times, still overlapping): one new alert.
    appointment_modified(first, AppointmentChange(start=DAY + timedelta(hours=9, minutes=15)))
    assert len(received) == 2 and "overlaps" in received[1]["text"]


def test_alert_payload_is_plain_json() -> None:
    payload = ALERT.payload()
    assert json.loads(json.dumps(payload)) == payload
    assert isinstance(ALERT, Alert) and payload["options"] == list(ALERT.options)
