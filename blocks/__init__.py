"""Prefect blocks: credentials and configuration; each block builds its connector."""

from blocks.base import CalendarBlock
from blocks.caldav import CalDavCredentials, ICloudCalendarCredentials
from blocks.database import FieldsyncDatabase
from blocks.google import GoogleCalendarCredentials, GoogleWorkspaceCredentials
from blocks.ics_feed import IcsFeedCalendar
from blocks.memory import MemoryCalendar
from blocks.microsoft import MicrosoftGraphCredentials
from blocks.notifications import EmailAlerts, SlackAlerts, WebhookAlerts

__all__ = [
    "CalDavCredentials",
    "CalendarBlock",
    "EmailAlerts",
    "FieldsyncDatabase",
    "GoogleCalendarCredentials",
    "GoogleWorkspaceCredentials",
    "ICloudCalendarCredentials",
    "IcsFeedCalendar",
    "MemoryCalendar",
    "MicrosoftGraphCredentials",
    "SlackAlerts",
    "WebhookAlerts",
]
