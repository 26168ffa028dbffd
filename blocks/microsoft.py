from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from blocks.base import CalendarBlock
from connectors.base import CalendarConnector
from connectors.graph import (
    DEFAULT_API_BASE_URL,
    DEFAULT_AUTHORITY_HOST,
    GraphCredentials,
    MicrosoftGraphConnector,
)


class MicrosoftGraphCredentials(CalendarBlock):
    """Microsoft 365 / Outlook calendars through Microsoft Graph, with an Entra ID app
    registration's application credentials (Calendars.ReadWrite application permission,
    ideally limited to the technicians' mailboxes by an application access policy). Calendar
    ids are "tech@contoso.com" for the default calendar or "tech@contoso.com/<calendarId>"."""

    _block_type_name = "fieldsync Microsoft Graph credentials"
    _block_type_slug = "fieldsync-microsoft-graph"
    _code_example = """
```python
from blocks.microsoft import MicrosoftGraphCredentials

microsoft_graph_credentials = MicrosoftGraphCredentials.load("BLOCK_NAME")
connector = microsoft_graph_credentials.connector()
```
"""
    platform: ClassVar[str] = "outlook"

    tenant_id: str = Field(
        description="Directory (tenant) id of the Microsoft 365 organisation, a GUID.",
    )
    client_id: str = Field(
        description="Application (client) id of the Entra ID app registration.",
    )
    client_secret: SecretStr | None = Field(
        default=None,
        description="The client secret's value (not its id); leave empty when using a certificate.",
    )
    certificate_private_key: SecretStr | None = Field(
        default=None,
        description="PEM private key of the certificate uploaded to the app registration; "
        "leave empty when using a client secret.",
    )
    certificate_thumbprint: str | None = Field(
        default=None,
        description="SHA-1 thumbprint (hex) of that certificate, as the Azure portal shows it.",
    )
    authority_host: str = Field(
        default=DEFAULT_AUTHORITY_HOST,
        description="Microsoft Entra ID sign-in host; change it only for national clouds or tests.",
    )
    api_base_url: str = Field(
        default=DEFAULT_API_BASE_URL,
        description="Microsoft Graph base URL including the version; change it only for "
        "national clouds or tests.",
    )

    @model_validator(mode="after")
    def _one_credential(self) -> MicrosoftGraphCredentials:
        has_secret = bool(self.client_secret and self.client_secret.get_secret_value())
        has_key = bool(
            self.certificate_private_key and self.certificate_private_key.get_secret_value()
        )
        if has_secret == has_key:
            raise ValueError("give exactly one of client_secret or certificate_private_key")
        if has_key and not self.certificate_thumbprint:
            raise ValueError("a certificate credential needs certificate_thumbprint")
        return self

    def credentials(self) -> GraphCredentials:
        name = getattr(self, "_block_document_name", None) or type(self).__name__
        return GraphCredentials(
            tenant_id=self.tenant_id,
            client_id=self.client_id,
            client_secret=self.client_secret.get_secret_value() if self.client_secret else None,
            certificate_private_key=(
                self.certificate_private_key.get_secret_value()
                if self.certificate_private_key
                else None
            ),
            certificate_thumbprint=self.certificate_thumbprint,
            authority_host=self.authority_host,
            name=str(name),
        )

    def connector(self) -> CalendarConnector:
        return MicrosoftGraphConnector(self.credentials(), api_base_url=self.api_base_url)
