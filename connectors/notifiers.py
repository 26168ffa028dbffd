"""Alert channels: Slack (chat.postMessage), email (SMTP) and a generic JSON webhook.

Like calendar connectors, they raise only the exception tree of `connectors.errors`, and their
HTTP goes through the shared policy in `connectors.http`.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Any, Protocol

import httpx

from connectors.errors import AuthError, PermanentError, TransientError, scrub
from connectors.http import PolicyClient
from fieldsync.alerts import Alert


class Notifier(Protocol):
    def send(self, alert: Alert) -> None: ...


class _Bearer:
    def __init__(self, token: str) -> None:
        self._token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> None:
        raise AuthError("Slack refused the bot token; issue a new one", platform="slack")

    def secrets(self) -> tuple[str, ...]:
        return (self._token,)


class _NoAuth:
    def headers(self) -> dict[str, str]:
        return {}

    def refresh(self) -> None:
        raise AuthError("the webhook refused the request (HTTP 401)", platform="webhook")


# Slack answers HTTP 200 with {"ok": false, "error": ...}; these errors mean the token is bad.
_SLACK_AUTH_ERRORS = {"not_authed", "invalid_auth", "account_inactive", "token_revoked",
                      "token_expired", "missing_scope"}  # fmt: skip


class SlackNotifier:
    def __init__(
        self,
        token: str,
        channel: str,
        *,
        api_base_url: str = "https://slack.com/api",
        client: httpx.Client | None = None,
    ) -> None:
        self.channel = channel
        self._token = token
        self._http = PolicyClient(
            "slack", client or httpx.Client(base_url=api_base_url, timeout=15), _Bearer(token)
        )

    def send(self, alert: Alert) -> None:
        response = self._http.post(
            "/chat.postMessage",
            json={"channel": self.channel, "text": f"{alert.title}: {alert.text}",
                  "blocks": alert.slack_blocks(), "unfurl_links": False},
        )  # fmt: skip
        body: dict[str, Any] = response.json()
        if not body.get("ok"):
            error = str(body.get("error", "unknown_error"))
            text = scrub(f"Slack refused the message to {self.channel}: {error}", (self._token,))
            if error in _SLACK_AUTH_ERRORS:
                raise AuthError(text, platform="slack")
            raise PermanentError(text, platform="slack")


class WebhookNotifier:
    def __init__(self, url: str, *, client: httpx.Client | None = None) -> None:
        self.url = url
        self._http = PolicyClient("webhook", client or httpx.Client(timeout=15), _NoAuth())

    def send(self, alert: Alert) -> None:
        self._http.post(self.url, json=alert.payload())


class EmailNotifier:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 15.0,
    ) -> None:
        if not recipients:
            raise PermanentError("an email alert channel needs at least one recipient",
                                 platform="email")  # fmt: skip
        self.host, self.port, self.sender, self.recipients = host, port, sender, recipients
        self._username, self._password = username, password
        self.starttls, self.timeout = starttls, timeout

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = f"[fieldsync {alert.severity}] {alert.title}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        body = [alert.text]
        if alert.options:
            body += ["", "Options:", *(f"{i}. {o}" for i, o in enumerate(alert.options, 1))]
        body += ["", f"Appointments: {', '.join(alert.appointment_ids)}"]
        message.set_content("\n".join(body))
        secrets = tuple(s for s in (self._password,) if s)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username and self._password:
                    smtp.login(self._username, self._password)
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError:
            raise AuthError(f"the SMTP server {self.host} refused the login",
                            platform="email") from None  # fmt: skip
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
            raise TransientError(scrub(f"SMTP {self.host}:{self.port}: {exc}", secrets),
                                 platform="email") from None  # fmt: skip
        except smtplib.SMTPException as exc:
            raise PermanentError(scrub(f"SMTP {self.host}:{self.port}: {exc}", secrets),
                                 platform="email") from None  # fmt: skip
