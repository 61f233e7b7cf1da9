"""Request and response bodies of the watch API, in seed 003's shapes (extended, not renamed)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dispatch.security.passwords import MAX_LENGTH, MIN_LENGTH

Frequency = Literal["instant", "hourly", "daily"]
# One @, no spaces, a dot in the domain: enough to catch typos; the mailbox is the proof.
EmailStr = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
Password = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)


def _zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _urls(values: list[str]) -> list[str]:
    cleaned = []
    for value in values:
        url = value.strip()
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or len(url) > 2000:
            raise ValueError(f"{value!r} is not an http or https URL")
        cleaned.append(url)
    return list(dict.fromkeys(cleaned))


class Preferences(BaseModel):
    """Seed 003's preferences; hours are 0..23 in the notification time zone."""

    timezone: str = "UTC"
    currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$")
    notifications_email: bool = True
    notifications_push: bool = True
    notifications_webhook: bool = False
    # Where webhooks go, in failover order (delivered by the gateway: retries, signatures).
    webhook_urls: list[str] = Field(default_factory=list, max_length=5)
    quiet_hours_start: int | None = Field(default=None, ge=0, le=23)
    quiet_hours_end: int | None = Field(default=None, ge=0, le=23)
    notification_timezone: str | None = None
    delivery_frequency: Frequency = "instant"

    _check_zone = field_validator("timezone", "notification_timezone")(_zone)
    _check_urls = field_validator("webhook_urls")(_urls)

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _both_hours(self) -> Preferences:
        if (self.quiet_hours_start is None) != (self.quiet_hours_end is None):
            raise ValueError("quiet_hours_start and quiet_hours_end are set together")
        return self


class PreferencesPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    notifications_email: bool | None = None
    notifications_push: bool | None = None
    notifications_webhook: bool | None = None
    webhook_urls: list[str] | None = Field(default=None, max_length=5)
    quiet_hours_start: int | None = Field(default=None, ge=0, le=23)
    quiet_hours_end: int | None = Field(default=None, ge=0, le=23)
    notification_timezone: str | None = None
    delivery_frequency: Frequency | None = None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: str = Password
    display_name: str | None = Field(default=None, max_length=120)
    is_admin: bool = False
    preferences: PreferencesPatch | None = None


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: str = Password
    display_name: str | None = Field(default=None, max_length=120)


class UserPatch(BaseModel):
    """What an admin may change; a user changes their own profile through ``/me``."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = None
    password: str | None = Field(default=None, min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    display_name: str | None = Field(default=None, max_length=120)
    is_active: bool | None = None
    is_admin: bool | None = None


class MePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=120)
    preferences: PreferencesPatch | None = None
    password: str | None = Field(default=None, min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    current_password: str | None = Field(default=None, max_length=MAX_LENGTH)


class Integration(BaseModel):
    provider: str
    linked: bool
    watch_rule_count: int


class UserOut(BaseModel):
    """Seed 003's ``/me`` shape, with ``is_admin`` added."""

    id: int
    email: str
    display_name: str | None
    is_active: bool
    is_admin: bool
    preferences: Preferences
    integrations: list[Integration] = []
    created_at: datetime
    updated_at: datetime


class LogoutOut(BaseModel):
    user_id: int
    logged_out_at: datetime
    invalidate_before: datetime


class PersonalKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    expires_at: datetime | None = None


class PersonalKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    user_id: int
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class PersonalKeyCreated(PersonalKeyOut):
    key: str = Field(description="The key itself: shown once, never again")


class EventOut(BaseModel):
    """Seed 003's ``EventOut``; ``listing_id`` is the catalogue product's id."""

    id: int
    user_id: int
    type: str
    watch_release_id: int | None = None
    rule_id: int | None
    listing_id: int | None
    payload: dict[str, Any]
    created_at: datetime


class NotificationOut(BaseModel):
    id: int
    user_id: int
    event_id: int
    event_type: str
    channel: str
    status: str
    is_read: bool
    delivered_at: datetime | None
    failed_at: datetime | None
    read_at: datetime | None
    created_at: datetime
    due_at: datetime | None = Field(description="When a pending one may go (quiet hours, digests)")
    attempts: int
    error: str | None
    gateway_task_id: int | None = Field(description="A webhook's gateway task (its delivery)")


class WebhookOut(BaseModel):
    """The user's webhook: where it goes and the secret its signatures are made with."""

    enabled: bool
    urls: list[str]
    endpoint_id: int | None
    signing_secret: str | None = Field(
        description="Standard Webhooks secret (whsec_…) to verify webhook-signature with"
    )


class UnreadCount(BaseModel):
    unread_count: int


class MarkedRead(BaseModel):
    marked: int


def _phrases(values: list[str] | None, name: str) -> list[str] | None:
    """Seed 003: keywords are stripped and lower-cased, and none may be empty."""
    if values is None:
        return None
    cleaned = [value.strip().lower() for value in values]
    if any(not value for value in cleaned):
        raise ValueError(f"{name} must not contain empty strings")
    return list(dict.fromkeys(cleaned))


class RuleQuery(BaseModel):
    """Seed 003's ``query`` (sources, keywords, q, max_price, currency) and Dispatch's filters."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(min_length=1, max_length=20)
    keywords: list[str] | None = Field(default=None, max_length=20)
    q: str | None = Field(default=None, max_length=500)
    exclude_keywords: list[str] | None = Field(default=None, max_length=20)
    brands: list[str] | None = Field(default=None, max_length=20)
    sizes: list[str] | None = Field(default=None, max_length=50)
    conditions: list[str] | None = Field(default=None, max_length=10)
    min_price: Decimal | None = Field(default=None, ge=0, max_digits=14)
    max_price: Decimal | None = Field(default=None, ge=0, max_digits=14)
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")

    @field_validator("sources")
    @classmethod
    def _sources(cls, values: list[str]) -> list[str]:
        cleaned = list(dict.fromkeys(value.strip().lower() for value in values))
        if any(not value for value in cleaned):
            raise ValueError("sources must not contain empty strings")
        return cleaned

    @field_validator("keywords", "exclude_keywords", "brands", "sizes", "conditions")
    @classmethod
    def _lists(cls, values: list[str] | None, info: Any) -> list[str] | None:
        return _phrases(values, info.field_name)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return value.upper() if value else None

    @model_validator(mode="after")
    def _range(self) -> RuleQuery:
        low, high = self.min_price, self.max_price
        if low is not None and high is not None and low > high:
            raise ValueError("max_price must be greater than or equal to min_price")
        return self

    def stored(self) -> dict[str, Any]:
        """The query as kept and shown back: set fields only, prices as numbers."""
        data = self.model_dump(exclude_none=True)
        for name in ("min_price", "max_price"):
            if name in data:
                data[name] = float(data[name])
        return data


class NotifyOn(BaseModel):
    """What a rule reports besides new matches; drop thresholds in the rule's currency."""

    model_config = ConfigDict(extra="forbid")

    new_match: bool = True
    price_drop: bool = True
    drop_amount: Decimal | None = Field(default=None, gt=0, max_digits=14)
    drop_percent: float | None = Field(default=None, gt=0, lt=100)
    price_rise: bool = False
    back_in_stock: bool = True
    ended: bool = False
    lowest_in_days: int | None = Field(default=None, ge=1, le=365)

    def stored(self) -> dict[str, Any]:
        data = self.model_dump()
        if data["drop_amount"] is not None:
            data["drop_amount"] = float(data["drop_amount"])
        return data


PollInterval = Field(default=600, ge=30, le=86_400)


class WatchRuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    query: RuleQuery
    is_active: bool = True
    poll_interval_seconds: int = PollInterval
    notify_on: NotifyOn | None = None


class WatchRulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=120)
    query: dict[str, Any] | None = None  # merged into the stored query, then validated
    is_active: bool | None = None
    poll_interval_seconds: int | None = Field(default=None, ge=30, le=86_400)
    notify_on: dict[str, Any] | None = None


class WatchRuleOut(BaseModel):
    """Seed 003's ``WatchRuleOut`` plus ``notify_on``."""

    id: int
    user_id: int
    name: str
    query: dict[str, Any]
    is_active: bool
    poll_interval_seconds: int
    last_run_at: datetime | None
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    notify_on: NotifyOn


class SearchQuery(BaseModel):
    """Seed 003's ``SearchQuery`` (the body of ``POST /search`` and of save-alert)."""

    keywords: list[str] = Field(default_factory=list, max_length=20)
    providers: list[str] | None = None
    min_price: Decimal | None = Field(default=None, ge=0, max_digits=14)
    max_price: Decimal | None = Field(default=None, ge=0, max_digits=14)
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    min_condition: str | None = None
    page: int = Field(default=1, ge=1)
    page_size: int = Field(default=24, ge=1, le=100)


class SaveAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    query: SearchQuery
    poll_interval_seconds: int = PollInterval
    notify_on: NotifyOn | None = None
