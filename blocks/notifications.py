"""Alert channel blocks: where conflict alerts go. Name them in FIELDSYNC_ALERT_BLOCKS."""

from __future__ import annotations

from abc import ABC, abstractmethod

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from connectors.notifiers import EmailNotifier, Notifier, SlackNotifier, WebhookNotifier


class AlertChannel(Block, ABC):
    _documentation_url = HttpUrl("https://github.com/fieldsync/fieldsync#conflict-alerts")

    @abstractmethod
    def notifier(self) -> Notifier:
        """A ready sender for this channel."""


class SlackAlerts(AlertChannel):
    """Posts conflict alerts to a Slack channel with chat.postMessage (a bot token with the
    chat:write scope)."""

    _block_type_name = "fieldsync Slack alerts"
    _block_type_slug = "fieldsync-slack-alerts"
    _code_example = """
```python
from blocks.notifications import SlackAlerts

slack_alerts = SlackAlerts.load("BLOCK_NAME")
slack_alerts.notifier()
```
"""
    bot_token: SecretStr = Field(description="Slack bot token (xoxb-...) with chat:write.")
    channel: str = Field(description="Channel id or name the alerts are posted to.")
    api_base_url: str = Field(
        default="https://slack.com/api", description="Slack Web API base URL (for tests)."
    )

    def notifier(self) -> Notifier:
        return SlackNotifier(
            self.bot_token.get_secret_value(), self.channel, api_base_url=self.api_base_url
        )


class EmailAlerts(AlertChannel):
    """Sends conflict alerts by email through an SMTP server."""

    _block_type_name = "fieldsync email alerts"
    _block_type_slug = "fieldsync-email-alerts"
    _code_example = """
```python
from blocks.notifications import EmailAlerts

email_alerts = EmailAlerts.load("BLOCK_NAME")
email_alerts.notifier()
```
"""
    host: str = Field(description="SMTP server host name.")
    port: int = Field(default=587, description="SMTP server port.")
    sender: str = Field(description="From address of the alerts.")
    recipients: list[str] = Field(description="Addresses that receive the alerts.")
    username: str | None = Field(default=None, description="SMTP login user, if needed.")
    password: SecretStr | None = Field(default=None, description="SMTP login password.")
    starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS.")

    def notifier(self) -> Notifier:
        return EmailNotifier(
            self.host, self.port, self.sender, list(self.recipients),
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            starttls=self.starttls,
        )  # fmt: skip


class WebhookAlerts(AlertChannel):
    """Posts each conflict alert as JSON to a URL, such as a Zapier catch hook."""

    _block_type_name = "fieldsync webhook alerts"
    _block_type_slug = "fieldsync-webhook-alerts"
    _code_example = """
```python
from blocks.notifications import WebhookAlerts

webhook_alerts = WebhookAlerts.load("BLOCK_NAME")
webhook_alerts.notifier()
```
"""
    url: SecretStr = Field(
        description="Webhook URL; secret because catch-hook URLs work as credentials."
    )

    def notifier(self) -> Notifier:
        return WebhookNotifier(self.url.get_secret_value())
