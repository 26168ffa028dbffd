"""Which webhook sources this deployment serves, built from FIELDSYNC_* environment variables.

Each setting is read from `FIELDSYNC_<FIELD NAME IN CAPITALS>`, e.g. FIELDSYNC_CALENDLY_SIGNING_KEY.
A platform whose signing secret is not set is not registered (its /webhooks/<name> path then
answers 404). A platform whose secret is set but which lacks something else it needs (Acuity's
user id, HubSpot's public webhook URL and token) is a configuration error, raised at start-up
rather than discovered on the first delivery.

    platform      secret (turns it on)               also needed / optional
    calendly      CALENDLY_SIGNING_KEY               CALENDLY_TOLERANCE_SECONDS (180)
    acuity        ACUITY_API_KEY                     ACUITY_USER_ID; ACUITY_BASE_URL
    hubspot       HUBSPOT_CLIENT_SECRET              HUBSPOT_WEBHOOK_URL, HUBSPOT_ACCESS_TOKEN;
                                                     HUBSPOT_BASE_URL, HUBSPOT_FIELD_JOB_TYPES
    jobber        JOBBER_CLIENT_SECRET               JOBBER_ACCESS_TOKEN; JOBBER_API_URL,
                                                     JOBBER_API_VERSION
    housecallpro  HOUSECALLPRO_SIGNING_SECRET        (signature scheme unverified)
    servicetitan  SERVICETITAN_HMAC_KEY              SERVICETITAN_SIGNATURE_HEADER (unverified)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from fieldsync.intake.sources import acuity, hubspot, jobber, servicetitan
from fieldsync.intake.sources.acuity import AcuitySource
from fieldsync.intake.sources.base import WebhookSource
from fieldsync.intake.sources.calendly import CalendlySource
from fieldsync.intake.sources.housecall_pro import HousecallProSource
from fieldsync.intake.sources.hubspot import HubSpotSource
from fieldsync.intake.sources.jobber import JobberSource
from fieldsync.intake.sources.servicetitan import ServiceTitanSource

ENV_PREFIX = "FIELDSYNC_"


class SourceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    calendly_signing_key: SecretStr | None = None
    calendly_tolerance_seconds: int = Field(180, gt=0)

    acuity_api_key: SecretStr | None = None  # signs the webhooks and authenticates API reads
    acuity_user_id: str | None = None
    acuity_base_url: str = acuity.DEFAULT_BASE_URL

    hubspot_client_secret: SecretStr | None = None
    hubspot_webhook_url: str | None = None  # the public URL HubSpot posts to, as it signs it
    hubspot_access_token: SecretStr | None = None  # private-app token for the CRM reads
    hubspot_base_url: str = hubspot.DEFAULT_BASE_URL
    hubspot_field_job_types: str = "Field visit"  # comma-separated hs_activity_type values

    jobber_client_secret: SecretStr | None = None
    jobber_access_token: SecretStr | None = None
    jobber_api_url: str = jobber.DEFAULT_API_URL
    jobber_api_version: str = jobber.DEFAULT_API_VERSION

    housecallpro_signing_secret: SecretStr | None = None

    servicetitan_hmac_key: SecretStr | None = None
    servicetitan_signature_header: str = servicetitan.DEFAULT_SIGNATURE_HEADER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper(), "").strip()
            if raw:  # an empty variable means "not configured", as if it were absent
                values[name] = raw
        return cls.model_validate(values)


def _needed(settings: SourceSettings, name: str) -> str:
    """A companion setting a platform cannot work without once its secret is set."""
    value = getattr(settings, name)
    if value is None:
        platform = name.split("_", 1)[0]
        raise ValueError(
            f"{platform}: its secret is set but {ENV_PREFIX}{name.upper()} is not; set it, "
            "or unset the secret to turn the source off"
        )
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def _calendly(settings: SourceSettings) -> WebhookSource | None:
    if settings.calendly_signing_key is None:
        return None
    tolerance = timedelta(seconds=settings.calendly_tolerance_seconds)
    return CalendlySource(settings.calendly_signing_key, tolerance=tolerance)


def _acuity(settings: SourceSettings) -> WebhookSource | None:
    if settings.acuity_api_key is None:
        return None
    user_id = _needed(settings, "acuity_user_id")
    return AcuitySource(user_id, settings.acuity_api_key, base_url=settings.acuity_base_url)


def _hubspot(settings: SourceSettings) -> WebhookSource | None:
    if settings.hubspot_client_secret is None:
        return None
    return HubSpotSource(
        settings.hubspot_client_secret,
        _needed(settings, "hubspot_webhook_url"),
        SecretStr(_needed(settings, "hubspot_access_token")),
        field_job_types=settings.hubspot_field_job_types.split(","),
        base_url=settings.hubspot_base_url,
    )


def _jobber(settings: SourceSettings) -> WebhookSource | None:
    if settings.jobber_client_secret is None:
        return None
    return JobberSource(
        settings.jobber_client_secret,
        SecretStr(_needed(settings, "jobber_access_token")),
        api_url=settings.jobber_api_url,
        api_version=settings.jobber_api_version,
    )


def _housecallpro(settings: SourceSettings) -> WebhookSource | None:
    if settings.housecallpro_signing_secret is None:
        return None
    return HousecallProSource(settings.housecallpro_signing_secret)


def _servicetitan(settings: SourceSettings) -> WebhookSource | None:
    if settings.servicetitan_hmac_key is None:
        return None
    return ServiceTitanSource(
        settings.servicetitan_hmac_key, signature_header=settings.servicetitan_signature_header
    )


_BUILDERS: tuple[Callable[[SourceSettings], WebhookSource | None], ...] = (
    _calendly,
    _acuity,
    _hubspot,
    _jobber,
    _housecallpro,
    _servicetitan,
)


def build_sources(settings: SourceSettings) -> dict[str, WebhookSource]:
    """The configured sources by name (the /webhooks/<name> path segment)."""
    sources: dict[str, WebhookSource] = {}
    for build in _BUILDERS:
        source = build(settings)
        if source is not None:
            sources[source.name] = source
    return sources
