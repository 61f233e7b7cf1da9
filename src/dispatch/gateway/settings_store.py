"""Gateway settings kept in the database and edited in the UI: SMTP for alerts, task cleanup.

Seed 002's keys and defaults. The SMTP password is write-only: it is never shown back,
and an update that leaves it out (or sends the mask) keeps the stored one.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.models import GatewaySetting
from dispatch.security.masking import MASK

Encryption = Literal["none", "starttls", "ssl_tls"]


class GatewaySettings(BaseModel):
    """Every stored setting with its default (seed 002's ``settings`` table)."""

    smtp_server: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    email_from: str | None = None
    smtp_encryption: Encryption = "starttls"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    enable_task_cleanup: bool = False
    task_cleanup_days: int = Field(default=30, ge=1, le=3650)


class SettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    smtp_server: str | None = Field(default=None, max_length=255)
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_username: str | None = Field(default=None, max_length=255)
    smtp_password: str | None = Field(default=None, max_length=1000)
    email_from: str | None = Field(default=None, max_length=255)
    smtp_encryption: Encryption | None = None
    smtp_timeout_seconds: float | None = Field(default=None, gt=0, le=120)
    enable_task_cleanup: bool | None = None
    task_cleanup_days: int | None = Field(default=None, ge=1, le=3650)


class SettingsOut(GatewaySettings):
    smtp_password: str | None = Field(default=None, description="Never shown; the mask when set")


async def load(session: AsyncSession) -> GatewaySettings:
    rows = await session.scalars(select(GatewaySetting))
    stored = {row.key: row.value for row in rows if row.key in GatewaySettings.model_fields}
    return GatewaySettings.model_validate(stored)


# Settings that may be emptied with null; for the others null means "leave as it is".
_CLEARABLE = frozenset({"smtp_server", "smtp_username", "smtp_password", "email_from"})


async def update(session: AsyncSession, data: SettingsUpdate, now: datetime) -> GatewaySettings:
    changes: dict[str, Any] = {
        key: value
        for key, value in data.model_dump(exclude_unset=True).items()
        if value is not None or key in _CLEARABLE
    }
    if changes.get("smtp_password") == MASK:
        changes.pop("smtp_password")
    current = (await load(session)).model_dump()
    merged = GatewaySettings.model_validate({**current, **changes})
    for key, value in changes.items():
        row = await session.get(GatewaySetting, key)
        if row is None:
            session.add(GatewaySetting(key=key, value=value, updated_at=now))
        else:
            row.value = value
            row.updated_at = now
    return merged


def shown(settings: GatewaySettings) -> SettingsOut:
    values = settings.model_dump()
    values["smtp_password"] = MASK if settings.smtp_password else None
    return SettingsOut.model_validate(values)


class SmtpNotConfigured(Exception):
    """No SMTP server is set."""


def _open(settings: GatewaySettings) -> smtplib.SMTP:
    if not settings.smtp_server:
        raise SmtpNotConfigured("SMTP is not configured (set smtp_server in the gateway settings)")
    timeout = settings.smtp_timeout_seconds
    if settings.smtp_encryption == "ssl_tls":
        context = ssl.create_default_context()
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.smtp_server, settings.smtp_port, timeout=timeout, context=context
        )
    else:
        client = smtplib.SMTP(settings.smtp_server, settings.smtp_port, timeout=timeout)
        if settings.smtp_encryption == "starttls":
            client.starttls(context=ssl.create_default_context())
    if settings.smtp_username:
        client.login(settings.smtp_username, settings.smtp_password or "")
    return client


def _send(settings: GatewaySettings, message: EmailMessage) -> None:
    with _open(settings) as client:
        client.send_message(message)


def _check(settings: GatewaySettings) -> None:
    with _open(settings) as client:
        client.noop()


async def send_email(
    settings: GatewaySettings, recipients: list[str], subject: str, body: str
) -> None:
    """Send one plain-text mail; smtplib runs in a thread so the event loop never blocks."""
    message = EmailMessage()
    message["From"] = settings.email_from or settings.smtp_username or "dispatch@localhost"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(body)
    await asyncio.to_thread(_send, settings, message)


async def check_connection(settings: GatewaySettings) -> None:
    """Connect, negotiate encryption and log in; raises on any failure."""
    await asyncio.to_thread(_check, settings)


async def connection_report(settings: GatewaySettings) -> tuple[bool, str]:
    """(worked, what happened) of a connection test; SmtpNotConfigured is left to the caller."""
    try:
        await check_connection(settings)
    except SmtpNotConfigured:
        raise
    # smtplib's errors are OSErrors; a malformed host name is a ValueError (UnicodeError).
    except (OSError, TimeoutError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, f"connected to {settings.smtp_server}:{settings.smtp_port}"
