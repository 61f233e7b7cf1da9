"""Request and response bodies of the gateway's admin API and ingress."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dispatch.gateway import mapping

HttpMethod = Literal["POST", "PUT", "PATCH", "GET", "DELETE"]
TaskStatus = Literal["pending", "processing", "success", "failed", "held", "stopped"]
ParamName = Annotated[str, Field(min_length=1, max_length=200)]


def _check_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


class Accepted(BaseModel):
    """Seed 002's answer, kept: ``status`` is ``queued`` or ``held``."""

    status: Literal["queued", "held"]
    task_id: int
    replayed: bool = Field(
        default=False, description="True when an earlier request with this Idempotency-Key made it"
    )


class ResourceFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000)
    method: HttpMethod | None = None
    headers: dict[str, str] | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, le=120)
    required_params: list[ParamName] | None = None
    is_active: bool | None = None
    health_check_enabled: bool | None = None
    health_check_method: Literal["simple", "actual"] | None = None
    health_check_test_values: dict[str, Any] | None = None
    health_check_interval_min: int | None = Field(default=None, ge=5, le=86_400)
    health_check_interval_max: int | None = Field(default=None, ge=5, le=86_400)
    healthy_threshold: int | None = Field(default=None, ge=1, le=100)
    unhealthy_threshold: int | None = Field(default=None, ge=1, le=100)
    send_failure_email: bool | None = None
    notification_email: str | None = Field(default=None, max_length=2000)
    notification_subject: str | None = Field(default=None, max_length=500)
    notification_template: str | None = Field(default=None, max_length=20_000)
    send_failure_webhook: bool | None = None
    failure_webhook_url: str | None = Field(default=None, max_length=2000)
    failure_webhook_headers: dict[str, str] | None = None
    failure_webhook_payload: dict[str, Any] | None = None
    rate_limit_per_second: float | None = Field(default=None, gt=0, le=100_000)
    concurrency_limit: int | None = Field(default=None, ge=1, le=10_000)

    _urls = field_validator("url", "failure_webhook_url")(_check_url)

    @model_validator(mode="after")
    def _interval_order(self) -> ResourceFields:
        low, high = self.health_check_interval_min, self.health_check_interval_max
        if low is not None and high is not None and low > high:
            raise ValueError("health_check_interval_min must not exceed health_check_interval_max")
        return self


class ResourceCreate(ResourceFields):
    name: str = Field(min_length=1, max_length=200)
    url: str = Field(max_length=2000)


class ResourceUpdate(ResourceFields):
    name: str | None = Field(default=None, min_length=1, max_length=200)


class BreakerOut(BaseModel):
    state: str
    consecutive_failures: int = Field(description="Consecutive failed deliveries")
    consecutive_successes: int
    probe_failures: int = Field(description="Consecutive failed health checks")
    probe_successes: int = Field(description="Consecutive successful health checks")
    opened_at: datetime | None
    last_failure_at: datetime | None
    last_success_at: datetime | None
    changed_at: datetime | None


class ResourceOut(BaseModel):
    id: int
    name: str
    url: str
    method: str
    headers: dict[str, str] = Field(description="Credential values are masked")
    timeout_seconds: float
    required_params: list[str]
    is_active: bool
    disabled_reason: str | None
    healthy: bool = Field(description="Seed 002's flag: the breaker is closed")
    breaker: BreakerOut
    signing_secret: str = Field(description="Masked; shown in full only at creation and rotation")
    previous_secret_expires_at: datetime | None
    health_check_enabled: bool
    health_check_method: str
    health_check_test_values: dict[str, Any]
    health_check_interval_min: int
    health_check_interval_max: int
    healthy_threshold: int
    unhealthy_threshold: int
    next_health_check_at: datetime | None
    last_checked_at: datetime | None
    latest_health_check_result: dict[str, Any] | None
    send_failure_email: bool
    notification_email: str | None
    notification_subject: str | None
    notification_template: str | None
    send_failure_webhook: bool
    failure_webhook_url: str | None
    failure_webhook_headers: dict[str, str]
    failure_webhook_payload: dict[str, Any]
    rate_limit_per_second: float | None
    concurrency_limit: int | None
    created_at: datetime
    updated_at: datetime


class SecretOut(BaseModel):
    signing_secret: str
    previous_secret_expires_at: datetime | None = None


class ResourceCreated(ResourceOut):
    signing_secret_full: str = Field(description="The whole signing secret, shown this once")


class ResourceDetails(BaseModel):
    """Seed 002's ``/resources/{id}/details``."""

    id: int
    name: str
    required_params: list[str]


class MappingRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource_id: int
    target_key: str = Field(min_length=1, max_length=200)
    source_type: Literal["from_source", "constant", "uuid", "timestamp", "template"]
    source_value: str | None = Field(default=None, max_length=5000)

    @model_validator(mode="after")
    def _valid(self) -> MappingRuleIn:
        mapping.validate_mapping_rule(
            mapping.MappingRule(self.target_key, self.source_type, self.source_value)
        )
        return self


class DevRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    condition_param: str | None = Field(default=None, max_length=200)
    condition_value: str | None = Field(default=None, max_length=1000)
    match: Literal["equals", "contains", "regex"] = "contains"
    target_param: str = Field(min_length=1, max_length=200)
    override_value: Any = None
    active: bool = True
    endpoint_id: int | None = Field(
        default=None, description="Client rules only: limit the rule to this endpoint"
    )

    @model_validator(mode="after")
    def _valid(self) -> DevRuleIn:
        mapping.validate_dev_rule(
            mapping.DevRule(
                self.target_param,
                self.override_value,
                self.condition_param,
                self.condition_value,
                self.match,
            )
        )
        return self


class MappingRuleOut(MappingRuleIn):
    id: int


class DevRuleOut(DevRuleIn):
    id: int


class EndpointFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=5000)
    required_params: list[ParamName] | None = None
    resource_ids: list[int] | None = Field(default=None, description="The failover order")
    client_ids: list[int] | None = None
    is_active: bool | None = None
    is_development_mode: bool | None = None
    dev_hold_tasks: bool | None = None
    dev_rules_enabled: bool | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=100)


class EndpointCreate(EndpointFields):
    path: str = Field(min_length=1, max_length=200)


class EndpointUpdate(EndpointFields):
    path: str | None = Field(default=None, min_length=1, max_length=200)


class EndpointResourceOut(BaseModel):
    id: int
    name: str
    sequence: int
    is_active: bool
    breaker_state: str


class EndpointOut(BaseModel):
    id: int
    path: str
    url: str
    description: str | None
    required_params: list[str]
    resources: list[EndpointResourceOut]
    client_ids: list[int]
    is_active: bool
    is_development_mode: bool
    dev_hold_tasks: bool
    dev_rules_enabled: bool
    max_attempts: int | None
    created_at: datetime
    updated_at: datetime


class EndpointRules(BaseModel):
    """All rules of an endpoint, replaced as a whole (seed 002's save-all)."""

    model_config = ConfigDict(extra="forbid")

    mapping: list[MappingRuleIn] = Field(default_factory=list, max_length=500)
    dev_rules: list[DevRuleIn] = Field(default_factory=list, max_length=500)


class EndpointRulesOut(BaseModel):
    mapping: list[MappingRuleOut]
    dev_rules: list[DevRuleOut]


class MappingTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any]
    client_id: int | None = Field(default=None, description="Apply this client's dev rules")
    resource_id: int | None = Field(default=None, description="Only this resource")
    rules: EndpointRules | None = Field(
        default=None, description="Unsaved rules to try instead of the stored ones"
    )


class MappingTestResult(BaseModel):
    resource_id: int
    resource_name: str
    target: dict[str, Any]
    missing: list[str]
    missing_required: list[str]


class MappingTestOut(BaseModel):
    working: dict[str, Any]
    overrides: dict[str, Any]
    results: list[MappingTestResult]


class ClientFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=5000)
    endpoint_ids: list[int] | None = None
    is_active: bool | None = None
    is_dev_client: bool | None = None
    dev_hold_tasks: bool | None = None
    dev_rules_enabled: bool | None = None
    dev_rules: list[DevRuleIn] | None = Field(default=None, max_length=500)


class ClientCreate(ClientFields):
    name: str = Field(min_length=1, max_length=200)


class ClientUpdate(ClientFields):
    name: str | None = Field(default=None, min_length=1, max_length=200)


class ClientOut(BaseModel):
    id: int
    name: str
    description: str | None
    token_prefix: str
    endpoint_ids: list[int]
    is_active: bool
    is_dev_client: bool
    dev_hold_tasks: bool
    dev_rules_enabled: bool
    dev_rules: list[DevRuleOut]
    token_rotated_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ClientWithToken(ClientOut):
    token: str = Field(description="The client's token, shown this once")


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    series: int
    attempt: int
    hop: int
    resource_id: int | None
    resource_name: str
    request_method: str
    request_url: str
    request_headers: dict[str, str]
    status_code: int | None
    response_body: str | None
    outcome: str
    error: str | None
    duration_ms: int | None
    worker: str | None
    started_at: datetime


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    message_id: str = Field(description="The webhook-id every request of this task carries")
    status: str
    endpoint_id: int | None
    endpoint_path: str
    client_id: int | None
    client_name: str
    ref: str | None
    scope: str | None
    resource_id: int | None
    resource_name: str | None
    series: int
    attempts: int
    max_attempts: int
    last_status_code: int | None
    last_error: str | None
    job_id: int | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class TaskDetail(TaskOut):
    source_payload: dict[str, Any]
    target_payload: dict[str, Any] | None
    idempotency_key: str | None
    attempt_log: list[AttemptOut]


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class BatchAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["retry", "stop", "release", "delete"]
    task_ids: list[int] = Field(min_length=1, max_length=1000)


class BatchResult(BaseModel):
    done: list[int]
    refused: dict[str, str] = Field(description="Task id -> why it was left alone")


class CheckResult(BaseModel):
    """Seed 002's manual check answer, extended with the breaker's state and the timing."""

    success: bool
    status_code: int | None
    detail: str
    duration_ms: int
    breaker_state: str
    request_id: str | None


class HealthCheckOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    method: str
    manual: bool
    success: bool
    status_code: int | None
    detail: str | None
    duration_ms: int | None
    breaker_state: str | None
    checked_at: datetime


class SmtpTestResult(BaseModel):
    success: bool
    detail: str
