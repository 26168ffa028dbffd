"""The registry: settings from FIELDSYNC_* variables, and only configured sources registered."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from fieldsync.domain import KNOWN_SOURCES
from fieldsync.intake.sources.acuity import AcuitySource
from fieldsync.intake.sources.calendly import CalendlySource
from fieldsync.intake.sources.hubspot import HubSpotSource
from fieldsync.intake.sources.registry import SourceSettings, build_sources


def test_nothing_configured_registers_nothing() -> None:
    assert build_sources(SourceSettings.from_env({})) == {}


def test_calendly_is_registered_under_its_path_name_when_its_key_is_set() -> None:
    settings = SourceSettings.from_env(
        {"FIELDSYNC_CALENDLY_SIGNING_KEY": "k", "FIELDSYNC_CALENDLY_TOLERANCE_SECONDS": "300"}
    )
    sources = build_sources(settings)
    assert list(sources) == ["calendly"]
    source = sources["calendly"]
    assert isinstance(source, CalendlySource)
    assert source.tolerance == timedelta(minutes=5)


def test_an_empty_variable_counts_as_not_configured() -> None:
    assert build_sources(SourceSettings.from_env({"FIELDSYNC_CALENDLY_SIGNING_KEY": " "})) == {}


def test_secrets_do_not_show_in_the_settings_repr() -> None:
    settings = SourceSettings.from_env({"FIELDSYNC_CALENDLY_SIGNING_KEY": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(settings) and "s3cr3t-value" not in str(settings)


def test_a_bad_setting_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError):
        SourceSettings.from_env(
            {"FIELDSYNC_CALENDLY_SIGNING_KEY": "k", "FIELDSYNC_CALENDLY_TOLERANCE_SECONDS": "-1"}
        )


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSYNC_CALENDLY_SIGNING_KEY", "from-the-environment")
    assert "calendly" in build_sources(SourceSettings.from_env())


def test_acuity_needs_its_user_id_once_its_key_is_set() -> None:
    settings = SourceSettings.from_env({"FIELDSYNC_ACUITY_API_KEY": "acuity-key-123"})
    with pytest.raises(ValueError, match="FIELDSYNC_ACUITY_USER_ID is not") as caught:
        build_sources(settings)
    assert "acuity-key-123" not in str(caught.value)


def test_acuity_is_registered_with_its_base_url() -> None:
    settings = SourceSettings.from_env(
        {
            "FIELDSYNC_ACUITY_API_KEY": "k",
            "FIELDSYNC_ACUITY_USER_ID": "11145481",
            "FIELDSYNC_ACUITY_BASE_URL": "http://127.0.0.1:9",
        }
    )
    source = build_sources(settings)["acuity"]
    assert isinstance(source, AcuitySource)
    assert "127.0.0.1:9" in repr(source)


EVERYTHING = {
    "FIELDSYNC_CALENDLY_SIGNING_KEY": "calendly-key",
    "FIELDSYNC_ACUITY_API_KEY": "acuity-key",
    "FIELDSYNC_ACUITY_USER_ID": "11145481",
    "FIELDSYNC_HUBSPOT_CLIENT_SECRET": "hubspot-secret",
    "FIELDSYNC_HUBSPOT_WEBHOOK_URL": "https://intake.example/webhooks/hubspot",
    "FIELDSYNC_HUBSPOT_ACCESS_TOKEN": "pat-na1-token",
    "FIELDSYNC_HUBSPOT_FIELD_JOB_TYPES": "Field visit, Repair",
    "FIELDSYNC_JOBBER_CLIENT_SECRET": "jobber-secret",
    "FIELDSYNC_JOBBER_ACCESS_TOKEN": "jobber-token",
    "FIELDSYNC_HOUSECALLPRO_SIGNING_SECRET": "hcp-secret",
    "FIELDSYNC_SERVICETITAN_HMAC_KEY": "st-key-0123456789abcdef0123456789ab",
}


def test_every_platform_registers_under_its_path_name_and_source_name() -> None:
    sources = build_sources(SourceSettings.from_env(EVERYTHING))
    expected = ["calendly", "acuity", "hubspot", "jobber", "housecallpro", "servicetitan"]
    assert list(sources) == expected
    assert all(name in KNOWN_SOURCES for name in sources)
    assert all(source.name == name for name, source in sources.items())
    hubspot = sources["hubspot"]
    assert isinstance(hubspot, HubSpotSource)
    assert hubspot.field_job_types == {"field visit", "repair"}
    for source in sources.values():
        for secret in EVERYTHING.values():
            if "secret" in secret or "key" in secret or "token" in secret:
                assert secret not in repr(source)


@pytest.mark.parametrize(
    "missing",
    [
        "FIELDSYNC_HUBSPOT_WEBHOOK_URL",
        "FIELDSYNC_HUBSPOT_ACCESS_TOKEN",
        "FIELDSYNC_JOBBER_ACCESS_TOKEN",
    ],
)
def test_a_half_configured_platform_is_refused_naming_what_is_missing(missing: str) -> None:
    environ = {k: v for k, v in EVERYTHING.items() if k != missing}
    with pytest.raises(ValueError, match=f"{missing} is not"):
        build_sources(SourceSettings.from_env(environ))
