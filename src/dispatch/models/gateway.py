"""Gateway: resources (destination APIs), endpoints, clients, rules, tasks and their attempts.

Seed 002's tables, kept by meaning: a task is what a client POSTed to ``/api/{path}``;
it is delivered by one queue job to the first resource of its endpoint's ordered list
that accepts it, failing over down the list. Breaker state lives in its own table so
hot delivery outcomes never contend with edits of a resource.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db.base import Base, BigId, partial, utcnow

TASK_STATUSES = ("pending", "processing", "success", "failed", "held", "stopped")
BREAKER_STATES = ("closed", "open", "half_open")
HEALTH_METHODS = ("simple", "actual")


class GatewayResource(Base):
    """A destination API. Secret header values and signing secrets never leave in full."""

    __tablename__ = "gateway_resources"
    __table_args__ = (
        CheckConstraint("health_check_method IN ('simple', 'actual')", name="health_method"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(10), default="POST")
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    timeout_seconds: Mapped[float] = mapped_column(Float, default=15.0)
    required_params: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    signing_secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100), default=None)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    rate_limit_per_second: Mapped[float | None] = mapped_column(Float, default=None)
    concurrency_limit: Mapped[int | None] = mapped_column(default=None)
    # Active health checks (seed 002: simple TCP connect, or an actual request).
    health_check_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    health_check_method: Mapped[str] = mapped_column(String(10), default="simple")
    health_check_test_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    health_check_interval_min: Mapped[int] = mapped_column(default=60)
    health_check_interval_max: Mapped[int] = mapped_column(default=90)
    healthy_threshold: Mapped[int] = mapped_column(default=2)
    unhealthy_threshold: Mapped[int] = mapped_column(default=3)
    next_health_check_at: Mapped[datetime | None] = mapped_column(default=None)
    last_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    latest_health_check_result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Failure notifications, sent on breaker state changes only.
    send_failure_email: Mapped[bool] = mapped_column(Boolean, default=False)
    notification_email: Mapped[str | None] = mapped_column(Text, default=None)
    notification_subject: Mapped[str | None] = mapped_column(Text, default=None)
    notification_template: Mapped[str | None] = mapped_column(Text, default=None)
    send_failure_webhook: Mapped[bool] = mapped_column(Boolean, default=False)
    failure_webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    failure_webhook_headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    failure_webhook_payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_alert_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GatewayBreaker(Base):
    """One circuit breaker per resource, shared by every process through this row."""

    __tablename__ = "gateway_breakers"
    __table_args__ = (CheckConstraint("state IN ('closed', 'open', 'half_open')", name="state"),)

    resource_id: Mapped[int] = mapped_column(
        ForeignKey("gateway_resources.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(10), default="closed")
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    consecutive_successes: Mapped[int] = mapped_column(default=0)
    probe_failures: Mapped[int] = mapped_column(default=0)
    probe_successes: Mapped[int] = mapped_column(default=0)
    window_started_at: Mapped[datetime | None] = mapped_column(default=None)
    window_requests: Mapped[int] = mapped_column(default=0)
    window_failures: Mapped[int] = mapped_column(default=0)
    opened_at: Mapped[datetime | None] = mapped_column(default=None)
    trial_started_at: Mapped[datetime | None] = mapped_column(default=None)
    last_failure_at: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class GatewayEndpoint(Base):
    """A route clients POST to at ``/api/{path}``."""

    __tablename__ = "gateway_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    required_params: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_development_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    dev_hold_tasks: Mapped[bool] = mapped_column(Boolean, default=False)
    dev_rules_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    max_attempts: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GatewayEndpointResource(Base):
    """The failover sequence: an endpoint's resources in the order they are tried."""

    __tablename__ = "gateway_endpoint_resources"

    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("gateway_endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    resource_id: Mapped[int] = mapped_column(
        ForeignKey("gateway_resources.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    sequence: Mapped[int] = mapped_column(default=0)


class GatewayClient(Base):
    """A caller of endpoints. The token is shown once and stored as a SHA-256 hash."""

    __tablename__ = "gateway_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_dev_client: Mapped[bool] = mapped_column(Boolean, default=False)
    dev_hold_tasks: Mapped[bool] = mapped_column(Boolean, default=False)
    dev_rules_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    token_rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GatewayEndpointClient(Base):
    """Which clients may call which endpoints."""

    __tablename__ = "gateway_endpoint_clients"

    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("gateway_endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[int] = mapped_column(
        ForeignKey("gateway_clients.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class GatewayMappingRule(Base):
    """One key of the payload sent to a resource for an endpoint (seed: parameter_rules)."""

    __tablename__ = "gateway_mapping_rules"
    __table_args__ = (Index("ix_gateway_mapping_rules_pair", "endpoint_id", "resource_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("gateway_endpoints.id", ondelete="CASCADE"))
    resource_id: Mapped[int] = mapped_column(
        ForeignKey("gateway_resources.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(default=0)
    target_key: Mapped[str] = mapped_column(String(200))
    source_type: Mapped[str] = mapped_column(String(20))
    source_value: Mapped[str | None] = mapped_column(Text, default=None)


class GatewayDevRule(Base):
    """A development override, of an endpoint (endpoint_id only) or of a client.

    A client rule with an endpoint_id applies to that endpoint only (seed 002 stored the
    column and ignored it).
    """

    __tablename__ = "gateway_dev_rules"
    __table_args__ = (
        CheckConstraint("match IN ('equals', 'contains', 'regex')", name="match"),
        CheckConstraint("endpoint_id IS NOT NULL OR client_id IS NOT NULL", name="owner"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("gateway_endpoints.id", ondelete="CASCADE"), default=None, index=True
    )
    client_id: Mapped[int | None] = mapped_column(
        ForeignKey("gateway_clients.id", ondelete="CASCADE"), default=None, index=True
    )
    position: Mapped[int] = mapped_column(default=0)
    condition_param: Mapped[str | None] = mapped_column(String(200), default=None)
    condition_value: Mapped[str | None] = mapped_column(Text, default=None)
    match: Mapped[str] = mapped_column(String(10), default="contains")
    target_param: Mapped[str] = mapped_column(String(200))
    override_value: Mapped[Any] = mapped_column(JSON, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class GatewayTask(Base):
    """One accepted request and its delivery state."""

    __tablename__ = "gateway_tasks"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'processing', 'success', 'failed', 'held', 'stopped')",
            name="status",
        ),
        Index("ix_gateway_tasks_created", "created_at", "id"),
        Index("ix_gateway_tasks_status_created", "status", "created_at"),
        Index("ix_gateway_tasks_client_created", "client_id", "created_at"),
        Index("ix_gateway_tasks_endpoint_created", "endpoint_id", "created_at"),
        Index("ix_gateway_tasks_resource_created", "resource_id", "created_at"),
        Index("ix_gateway_tasks_ref", "ref"),
        Index("ix_gateway_tasks_scope", "scope"),
        # A retried request (same client, same Idempotency-Key) finds its first task.
        Index(
            "uq_gateway_tasks_idempotency",
            "client_id",
            "idempotency_key",
            unique=True,
            **partial("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("gateway_endpoints.id", ondelete="SET NULL"), default=None
    )
    endpoint_path: Mapped[str] = mapped_column(String(200))
    client_id: Mapped[int | None] = mapped_column(
        ForeignKey("gateway_clients.id", ondelete="SET NULL"), default=None
    )
    client_name: Mapped[str] = mapped_column(String(200))
    ref: Mapped[str | None] = mapped_column(String(200), default=None)
    scope: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    source_payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    target_payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    resource_id: Mapped[int | None] = mapped_column(
        ForeignKey("gateway_resources.id", ondelete="SET NULL"), default=None
    )
    resource_name: Mapped[str | None] = mapped_column(String(200), default=None)
    job_id: Mapped[int | None] = mapped_column(BigId, default=None)
    series: Mapped[int] = mapped_column(default=1)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=5)
    last_status_code: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    # Lower-cased text of what task search matches (payloads, names, path, ref, scope), kept by
    # the application. Indexed outside the ORM: a trigram GIN index on PostgreSQL, an FTS5
    # trigram table on SQLite (see migration 0007 and dispatch.gateway.search).
    search_text: Mapped[str] = mapped_column(Text, default="")


class GatewayAttempt(Base):
    """One HTTP request of a delivery: which resource, what was sent (no secrets), the answer."""

    __tablename__ = "gateway_attempts"
    # The dashboard's deliveries per minute read the last hour only.
    __table_args__ = (Index("ix_gateway_attempts_started", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("gateway_tasks.id", ondelete="CASCADE"), index=True
    )
    series: Mapped[int] = mapped_column(default=1)
    attempt: Mapped[int] = mapped_column(default=1)
    hop: Mapped[int] = mapped_column(default=0)
    resource_id: Mapped[int | None] = mapped_column(
        ForeignKey("gateway_resources.id", ondelete="SET NULL"), default=None
    )
    resource_name: Mapped[str] = mapped_column(String(200))
    request_method: Mapped[str] = mapped_column(String(10))
    request_url: Mapped[str] = mapped_column(Text)
    request_headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    status_code: Mapped[int | None] = mapped_column(default=None)
    response_body: Mapped[str | None] = mapped_column(Text, default=None)
    outcome: Mapped[str] = mapped_column(String(12))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    duration_ms: Mapped[int | None] = mapped_column(default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)


class GatewayHealthCheck(Base):
    """One health check of a resource (all kept until retention prunes them)."""

    __tablename__ = "gateway_health_checks"
    __table_args__ = (Index("ix_gateway_health_checks_resource", "resource_id", "checked_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("gateway_resources.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(10))
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    success: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    duration_ms: Mapped[int | None] = mapped_column(default=None)
    breaker_state: Mapped[str | None] = mapped_column(String(10), default=None)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class GatewaySetting(Base):
    """Gateway settings kept in the database and edited in the UI (SMTP, retention)."""

    __tablename__ = "gateway_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
