"""The one Settings class. Nothing else in Dispatch reads ``os.environ``.

Every variable of seed 000's configuration table keeps its name and meaning; the
rest are documented in the README's configuration table.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

Environment = Literal["development", "test", "production"]
DatabaseKind = Literal["sqlite", "postgresql"]

DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
DEFAULT_ADMIN_PASSWORD = "admin"  # noqa: S105 - seed 002's default; refused in production
_ENVIRONMENT_ALIASES = {"dev": "development", "local": "development", "prod": "production"}
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ConfigError(Exception):
    """Start-up configuration is invalid; the message names each bad variable."""


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string (seed 000 used both forms)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Runtime configuration, read from the environment and ``.env``."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,  # a blank variable means "use the default", as in seed 000
    )

    # Seed 000's table, same names and meanings.
    app_name: str = "Dispatch"
    environment: Environment = "development"
    api_v1_prefix: str = "/api/v1"
    default_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    max_connections: int = Field(default=10, ge=1, le=1000)
    user_agent: str = DEFAULT_USER_AGENT
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    telemetry_endpoint: AnyHttpUrl | None = None
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    request_rate_per_minute: int = Field(default=60, ge=1)
    scrape_interval_seconds: int = Field(default=1800, ge=60)
    database_url: str = "sqlite:///./dispatch.db"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    master_key: SecretStr | None = None

    # Added by Dispatch.
    redis_url: str | None = None
    redis_key_prefix: str = Field(default="dispatch", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    gateway_admin_password: SecretStr = SecretStr(DEFAULT_ADMIN_PASSWORD)
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    cors_allow_credentials: bool = True
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    metrics_public: bool = False
    log_format: Literal["auto", "json", "console"] = "auto"
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)
    login_rate_per_minute: int = Field(default=10, ge=1)
    rate_limit_enabled: bool = True
    session_max_age_seconds: int = Field(default=43_200, ge=60)
    telemetry_buffer_size: int = Field(default=10_000, ge=1)
    telemetry_batch_size: int = Field(default=100, ge=1, le=10_000)
    telemetry_flush_interval_seconds: float = Field(default=5.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    database_schema: str | None = None
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)
    health_check_timeout_seconds: float = Field(default=2.0, gt=0, le=60)

    # The durable queue.
    worker_enabled: bool = True
    worker_concurrency: int = Field(default=4, ge=1, le=1000)
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["default"])
    worker_poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    worker_shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    job_lease_seconds: float = Field(default=60.0, gt=0)
    queue_upkeep_interval_seconds: float = Field(default=10.0, gt=0)
    job_retention_days: float = Field(default=7.0, gt=0)

    # Remote nodes leasing jobs over HTTP.
    node_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["remote", "rescue"]
    )
    node_lease_seconds: float = Field(default=300.0, ge=5)
    node_silent_seconds: float = Field(default=180.0, ge=5)
    node_claim_rate_per_minute: int = Field(default=60, ge=1)
    node_request_rate_per_minute: int = Field(default=600, ge=1)

    # The gateway (seed 002).
    gateway_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    gateway_queue: str = Field(default="default", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    gateway_max_attempts: int = Field(default=5, ge=1, le=100)
    gateway_retry_base_seconds: float = Field(default=5.0, ge=0)
    gateway_retry_cap_seconds: float = Field(default=3600.0, ge=0)
    gateway_retry_after_max_seconds: float = Field(default=3600.0, ge=0)
    gateway_max_body_bytes: int = Field(default=262_144, ge=1024)
    gateway_ingest_rate_per_minute: int = Field(default=6000, ge=1)
    gateway_config_cache_seconds: float = Field(default=2.0, ge=0, le=300)
    gateway_breaker_failures: int = Field(default=5, ge=1)
    gateway_breaker_window_seconds: float = Field(default=60.0, gt=0)
    gateway_breaker_min_requests: int = Field(default=10, ge=1)
    gateway_breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    gateway_breaker_cool_down_seconds: float = Field(default=30.0, gt=0)
    gateway_secret_grace_hours: float = Field(default=24.0, ge=0)
    gateway_alert_suppression_seconds: float = Field(default=3600.0, ge=0)
    gateway_health_retention_days: float = Field(default=30.0, gt=0)

    # The catalogue (seeds 000 and 001). Base URLs point tests and staging elsewhere.
    catalog_queue: str = Field(default="default", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    sync_schedule: str = "*/30 * * * * *"  # seed 001: 6-field cron, empty disables
    offers_service_url: AnyHttpUrl | None = None
    offers_refresh_token: SecretStr | None = None
    offers_currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$")
    offers_token_margin_seconds: float = Field(default=30.0, ge=0, le=240)
    catalog_sync_concurrency: int = Field(default=8, ge=1, le=100)
    catalog_provider_retries: int = Field(default=3, ge=0, le=10)
    catalog_retry_after_max_seconds: float = Field(default=60.0, ge=0)
    catalog_request_retention_days: float = Field(default=14.0, gt=0)
    catalog_change_retention_days: float = Field(default=90.0, gt=0)
    complexshop_base_url: AnyHttpUrl = AnyHttpUrl("https://shop.complex.com")
    universalstore_base_url: AnyHttpUrl = AnyHttpUrl("https://www.universalstore.com")
    goat_base_url: AnyHttpUrl = AnyHttpUrl("https://2fwotdvm2o-dsn.algolia.net")
    goat_algolia_app_id: str = "2FWOTDVM2O"
    goat_algolia_api_key: SecretStr = SecretStr("ac96de6fef0e02bb95d433d8d5c7038a")
    goat_algolia_index: str = "product_variants_v2"
    discogs_base_url: AnyHttpUrl = AnyHttpUrl("https://api.discogs.com")
    discogs_token: SecretStr | None = None
    # A user's Discogs account (seed 003's integration), through OAuth 1.0a: the
    # application's consumer key and secret from discogs.com/settings/developers.
    discogs_consumer_key: str | None = None
    discogs_consumer_secret: SecretStr | None = None
    discogs_site_url: AnyHttpUrl = AnyHttpUrl("https://www.discogs.com")
    # Where Discogs sends the user back after approving; default: this service's own
    # GET .../integrations/discogs/oauth/callback on the request's host.
    discogs_oauth_callback_url: AnyHttpUrl | None = None
    # Connected users' wantlists and collections are imported again on this period.
    discogs_sync_enabled: bool = True
    discogs_sync_interval_seconds: int = Field(default=3600, ge=60)
    ebay_base_url: AnyHttpUrl = AnyHttpUrl("https://api.ebay.com")
    ebay_client_id: str | None = None
    ebay_client_secret: SecretStr | None = None
    ebay_marketplace_id: str = "EBAY_US"
    # eBay Partner Network: outbound links carry these (seed 003's affiliate parameters).
    ebay_campaign_id: str | None = None
    ebay_custom_id: str | None = None

    # Fleet (seed 004): assets rescued by remote nodes, each copy a job on RESCUE_QUEUE.
    rescue_queue: str = Field(default="rescue", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    rescue_replication_target: int = Field(default=2, ge=1, le=20)
    # An asset of unknown size is counted as this big against a node's free space.
    rescue_unknown_size_mb: float = Field(default=10_240.0, gt=0)
    rescue_node_max_in_flight: int = Field(default=8, ge=1, le=1000)
    rescue_node_daily_assets: int = Field(default=1000, ge=0)  # 0: no daily cap
    priorizer_url: AnyHttpUrl | None = None
    priorizer_timeout_seconds: float = Field(default=30.0, gt=0)

    # Watch (seed 003): users, rules, events, notifications.
    self_registration: bool = False
    # Bearer JWTs from an external identity provider (seed 003 used Supabase); off unless
    # AUTH_JWKS_URL or AUTH_ISSUER is set. The JWKS defaults to {issuer}/.well-known/jwks.json.
    auth_issuer: str | None = None
    auth_jwks_url: AnyHttpUrl | None = None
    auth_audience: str = "authenticated"
    auth_clock_skew_seconds: int = Field(default=30, ge=0, le=600)
    auth_jwks_cache_seconds: float = Field(default=300.0, ge=0)
    # Provision a user on the first valid JWT of an unknown subject (seed 003's
    # DEV_AUTO_CREATE_USERS, which defaulted to on even in production).
    auth_auto_create_users: bool = False
    watch_default_currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$")
    watch_event_cooldown_seconds: float = Field(default=3600.0, ge=0)
    # Seed 003's per-group budgets (rpm + burst): watch_rules 60+20, search 30+10,
    # stream_events 12+2, discogs 30+10, auth_endpoints (Discogs OAuth) 20+5.
    watch_stream_keepalive_seconds: float = Field(default=10.0, gt=0, le=300)
    watch_rate_per_minute: int = Field(default=80, ge=1)
    search_rate_per_minute: int = Field(default=40, ge=1)
    stream_rate_per_minute: int = Field(default=14, ge=1)
    discogs_rate_per_minute: int = Field(default=40, ge=1)
    auth_endpoints_rate_per_minute: int = Field(default=25, ge=1)
    # Keys that seal users' provider tokens at rest, newest first (older ones still open
    # what they sealed); default: derived from SECRET_KEY, else MASTER_KEY.
    token_encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    @field_validator("environment", mode="before")
    @classmethod
    def _normalise_environment(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.strip().lower()
            return _ENVIRONMENT_ALIASES.get(lowered, lowered)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "allowed_origins",
        "api_keys",
        "token_encryption_keys",
        "trusted_proxies",
        "worker_queues",
        "node_queues",
        "gateway_allowed_networks",
        mode="before",
    )
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        try:
            return _split_list(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list or comma-separated list: {exc.msg}") from exc

    @field_validator("sync_schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        from dispatch.queue.schedules import InvalidSchedule, validate

        try:
            validate(value)
        except InvalidSchedule as exc:
            raise ValueError(str(exc)) from exc
        return value.strip()

    @field_validator("api_v1_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if not value.startswith("/") or len(value) < 2:
            raise ValueError("must be a path such as /api/v1")
        return value

    @field_validator("trusted_proxies", "gateway_allowed_networks")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        normalise_database_url(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^rediss?://", value):
            raise ValueError("must start with redis:// or rediss://")
        return value

    @field_validator("database_schema")
    @classmethod
    def _check_schema(cls, value: str | None) -> str | None:
        if value is not None and not _SCHEMA_NAME.match(value):
            raise ValueError("must be a lower-case SQL identifier")
        return value

    @model_validator(mode="after")
    def _rescue_queue_served_by_nodes(self) -> Settings:
        if self.rescue_queue not in self.node_queues:
            raise ValueError(
                f"RESCUE_QUEUE: {self.rescue_queue} must be one of NODE_QUEUES "
                f"({', '.join(self.node_queues)}): rescue copies are leased by remote nodes"
            )
        return self

    @model_validator(mode="after")
    def _separate_node_queues(self) -> Settings:
        shared = sorted(set(self.node_queues) & set(self.worker_queues))
        if shared:
            raise ValueError(
                f"NODE_QUEUES: {', '.join(shared)} is also in WORKER_QUEUES; a queue is served "
                "either by the service's workers or by remote nodes, not both"
            )
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment != "production":
            return self
        problems: list[str] = []
        if "*" in self.allowed_origins and self.cors_allow_credentials:
            problems.append(
                "ALLOWED_ORIGINS: '*' together with CORS_ALLOW_CREDENTIALS=true is refused "
                "in production; list the allowed origins"
            )
        password = self.gateway_admin_password.get_secret_value()
        if password in ("", DEFAULT_ADMIN_PASSWORD) or len(password) < 12:
            problems.append(
                "GATEWAY_ADMIN_PASSWORD: set a non-default password of at least "
                "12 characters in production"
            )
        secret = self.secret_key.get_secret_value() if self.secret_key else ""
        if len(secret) < 32:
            problems.append(
                "SECRET_KEY: set a random secret of at least 32 characters in production"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def auth_jwks_location(self) -> str | None:
        """Where the identity provider's signing keys are, or None when JWTs are off."""
        if self.auth_jwks_url is not None:
            return str(self.auth_jwks_url)
        if self.auth_issuer:
            return self.auth_issuer.rstrip("/") + "/.well-known/jwks.json"
        return None

    @cached_property
    def async_database_url(self) -> str:
        """DATABASE_URL rewritten for the async driver of its database."""
        return normalise_database_url(self.database_url)

    @property
    def database_kind(self) -> DatabaseKind:
        return "sqlite" if self.async_database_url.startswith("sqlite") else "postgresql"

    @property
    def is_embedded(self) -> bool:
        """True on the embedded SQLite default, where ``serve`` migrates by itself."""
        return self.database_kind == "sqlite"

    @property
    def cors_credentials_effective(self) -> bool:
        """Credentials are never combined with a wildcard origin (seed 000's bug)."""
        return self.cors_allow_credentials and "*" not in self.allowed_origins

    def env_api_keys(self) -> list[str]:
        """Keys accepted from the environment: API_KEYS, then MASTER_KEY last."""
        keys = [key.get_secret_value() for key in self.api_keys]
        if self.master_key is not None:
            keys.append(self.master_key.get_secret_value())
        return [key for key in keys if key]

    @cached_property
    def env_key_digests(self) -> tuple[bytes, ...]:
        """SHA-256 of each environment key, computed once for constant-time matching."""
        return tuple(hashlib.sha256(key.encode()).digest() for key in self.env_api_keys())


def normalise_database_url(url: str) -> str:
    """Map ``sqlite://``, ``postgresql://`` and ``postgres://`` to their async drivers."""
    raw = url.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    try:
        parsed = make_url(raw)
    except Exception as exc:
        raise ValueError(f"cannot parse database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        query = dict(parsed.query)
        sslmode = query.pop("sslmode", None)
        if sslmode is not None:
            query["ssl"] = sslmode  # asyncpg spells libpq's sslmode as ssl
        parsed = parsed.set(drivername="postgresql+asyncpg", query=query)
        return parsed.render_as_string(hide_password=False)
    raise ValueError("must be a sqlite:// or postgresql:// URL")


def _describe(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ()) if part != "__root__"]
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if not location:
        return message
    return f"{location[0].upper()}: {message}"


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build Settings, turning validation errors into one message naming each variable."""
    try:
        return Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        lines = [_describe(dict(error)) for error in exc.errors(include_input=False)]
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(lines)) from None
