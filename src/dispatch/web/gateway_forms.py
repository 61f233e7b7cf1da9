"""The gateway's admin forms: HTML form fields to the API's request schemas, and back.

A form's *values* are what its inputs show: strings, flags, key/value pairs and id lists.
They come from a stored object (to edit it) or from a submitted form (to show it again
with what went wrong), and become a request body through the same schema the JSON API
validates, so the UI accepts exactly what the API accepts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from dispatch.db.base import Base
from dispatch.errors import AppError
from dispatch.gateway.schemas import (
    DevRuleIn,
    DevRuleOut,
    EndpointRules,
    MappingRuleIn,
    MappingRuleOut,
)
from dispatch.gateway.settings_store import SettingsUpdate

Values = dict[str, Any]
Row = dict[str, str]
ModelT = TypeVar("ModelT", bound=BaseModel)

MAPPING_COLUMNS = ("resource_id", "target_key", "source_type", "source_value")
DEV_COLUMNS = (
    "condition_param",
    "match",
    "condition_value",
    "target_param",
    "override_value",
    "active",
    "endpoint_id",
)
_DEV_TEXTS = ("condition_param", "condition_value", "target_param", "override_value")
_SEPARATORS = re.compile(r"[,\n]")


class FormInvalid(Exception):
    """A form that cannot become a request body; ``messages`` tell the user why."""

    def __init__(self, messages: list[str], status: int = 422) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages
        self.status = status


@dataclass(frozen=True, slots=True)
class FormSpec:
    """How each input of a form becomes a field of its schema."""

    text: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()  # blank: left out, unless nullable
    nullable: tuple[str, ...] = ()  # blank: null
    flags: tuple[str, ...] = ()  # checkboxes
    lists: tuple[str, ...] = ()  # comma- or line-separated names
    ids: tuple[str, ...] = ()  # repeated inputs, order kept
    json: tuple[str, ...] = ()  # a JSON object
    pairs: tuple[str, ...] = ()  # key/value rows: {name}_key and {name}_value


RESOURCE = FormSpec(
    text=(
        "name",
        "url",
        "method",
        "health_check_method",
        "notification_email",
        "notification_subject",
        "notification_template",
        "failure_webhook_url",
    ),
    numbers=(
        "timeout_seconds",
        "rate_limit_per_second",
        "concurrency_limit",
        "health_check_interval_min",
        "health_check_interval_max",
        "healthy_threshold",
        "unhealthy_threshold",
    ),
    nullable=(
        "notification_email",
        "notification_subject",
        "notification_template",
        "failure_webhook_url",
        "rate_limit_per_second",
        "concurrency_limit",
    ),
    flags=("is_active", "health_check_enabled", "send_failure_email", "send_failure_webhook"),
    lists=("required_params",),
    json=("health_check_test_values", "failure_webhook_payload"),
    pairs=("headers", "failure_webhook_headers"),
)
ENDPOINT = FormSpec(
    text=("path", "description"),
    numbers=("max_attempts",),
    nullable=("max_attempts",),
    flags=("is_active", "is_development_mode", "dev_hold_tasks", "dev_rules_enabled"),
    lists=("required_params",),
    ids=("resource_ids", "client_ids"),
)
CLIENT = FormSpec(
    text=("name", "description"),
    nullable=("description",),
    flags=("is_active", "is_dev_client", "dev_hold_tasks", "dev_rules_enabled"),
    ids=("endpoint_ids",),
)
SETTINGS = FormSpec(
    text=("smtp_server", "smtp_username", "email_from", "smtp_encryption"),
    nullable=("smtp_server", "smtp_username", "email_from"),
    numbers=("smtp_port", "smtp_timeout_seconds", "task_cleanup_days"),
    flags=("enable_task_cleanup",),
)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def text_of(form: FormData, name: str) -> str:
    return _text(form.get(name))


def _number_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # "15", not "15.0", in a number input
    return str(value)


def values_from(stored: Mapping[str, Any], spec: FormSpec) -> Values:
    """What a form shows for a stored object (an API ``...Out`` model dumped to a dict)."""
    values: Values = {name: stored.get(name) or "" for name in spec.text}
    values |= {name: _number_text(stored.get(name)) for name in spec.numbers}
    values |= {name: bool(stored.get(name)) for name in spec.flags}
    values |= {name: ", ".join(stored.get(name) or []) for name in spec.lists}
    values |= {name: [str(i) for i in stored.get(name) or []] for name in spec.ids}
    values |= {name: pretty_json(stored[name]) if stored.get(name) else "" for name in spec.json}
    values |= {name: list((stored.get(name) or {}).items()) for name in spec.pairs}
    return values


def values_from_form(form: FormData, spec: FormSpec) -> Values:
    """What a form shows again after a failed submit: exactly what was sent."""
    values: Values = {name: _text(form.get(name)).strip() for name in spec.text}
    values |= {name: _text(form.get(name)).strip() for name in spec.numbers}
    values |= {name: name in form for name in spec.flags}
    values |= {name: _text(form.get(name)) for name in (*spec.lists, *spec.json)}
    values |= {name: [_text(v) for v in form.getlist(name)] for name in spec.ids}
    for name in spec.pairs:
        keys, texts = form.getlist(f"{name}_key"), form.getlist(f"{name}_value")
        values[name] = [(_text(k).strip(), _text(v)) for k, v in zip(keys, texts, strict=False)]
    return values


def json_object(text: str, label: str) -> dict[str, Any]:
    """A JSON object typed into a textarea; blank is ``{}``."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise FormInvalid([f"{label}: not valid JSON ({exc})"]) from exc
    if not isinstance(value, dict):
        raise FormInvalid([f"{label}: must be a JSON object {{…}}"])
    return value


def _ids(texts: Sequence[str], label: str) -> list[int]:
    try:
        return [int(text) for text in texts if text.strip()]
    except ValueError as exc:
        raise FormInvalid([f"{label}: ids must be whole numbers"]) from exc


def pretty_json(value: object) -> str:
    """JSON for people: indented, non-ASCII kept (templates escape it for HTML)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def body(values: Values, spec: FormSpec) -> dict[str, Any]:
    """The request body a form's values stand for."""
    data: dict[str, Any] = {}
    for name in spec.text:
        data[name] = values[name] or (None if name in spec.nullable else "")
    for name in spec.numbers:
        if values[name] or name in spec.nullable:
            data[name] = values[name] or None
    data |= {name: values[name] for name in spec.flags}
    data |= {name: split_names(values[name]) for name in spec.lists}
    data |= {name: _ids(values[name], label(name)) for name in spec.ids}
    data |= {name: json_object(values[name], label(name)) for name in spec.json}
    data |= {name: {k: v for k, v in values[name] if k} for name in spec.pairs}
    return data


def split_names(text: str) -> list[str]:
    return [part.strip() for part in _SEPARATORS.split(text) if part.strip()]


def problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """Pydantic's complaints as sentences a form can show."""
    found = []
    for error in exc.errors():
        where = " ".join(label(str(part)) for part in error["loc"] if isinstance(part, str))
        message = str(error["msg"]).removeprefix("Value error, ")
        found.append(f"{prefix}{where}: {message}" if where else f"{prefix}{message}")
    return found


def parse(model: type[ModelT], data: Mapping[str, Any], prefix: str = "") -> ModelT:
    """Validate ``data`` with the API's schema; FormInvalid lists what is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FormInvalid(problems(exc, prefix)) from exc


def column_defaults(model: type[Base]) -> dict[str, Any]:
    """A table's scalar column defaults, so a new form starts where the database would."""
    found = {}
    for column in model.__table__.columns:
        if column.default is not None and column.default.is_scalar:
            found[column.key] = getattr(column.default, "arg", None)
    return found


def refusal(exc: Exception | None) -> tuple[list[str], int]:
    """What a form shows for a refused submit, and the status it comes back with."""
    if exc is None:
        return [], 200
    if isinstance(exc, FormInvalid):
        return exc.messages, exc.status
    if isinstance(exc, ValidationError):
        return problems(exc), 422
    assert isinstance(exc, AppError)
    return [describe(exc)], exc.status


def describe(exc: AppError) -> str:
    """A service error as one sentence, naming the ids or path it is about."""
    details = exc.details if isinstance(exc.details, dict) else {}
    if "ids" in details:
        return f"{exc.message}: {', '.join(str(i) for i in details['ids'])}"
    return exc.message


# Rule rows ---------------------------------------------------------------------------------


def rows_from_form(form: FormData, prefix: str, columns: Sequence[str]) -> list[Row]:
    """Parallel repeated inputs (``map_target_key`` …) as one dict per table row."""
    lists = {column: form.getlist(prefix + column) for column in columns}
    count = max((len(items) for items in lists.values()), default=0)
    return [
        {c: _text(lists[c][i]) if i < len(lists[c]) else "" for c in columns} for i in range(count)
    ]


def mapping_rows(rules: Sequence[MappingRuleOut]) -> list[Row]:
    return [
        {
            "resource_id": str(rule.resource_id),
            "target_key": rule.target_key,
            "source_type": rule.source_type,
            "source_value": rule.source_value or "",
        }
        for rule in rules
    ]


def dev_rows(rules: Sequence[DevRuleOut]) -> list[Row]:
    return [
        {
            "condition_param": rule.condition_param or "",
            "match": rule.match,
            "condition_value": rule.condition_value or "",
            "target_param": rule.target_param,
            "override_value": ""
            if rule.override_value is None
            else json.dumps(rule.override_value, ensure_ascii=False),
            "active": "1" if rule.active else "",
            "endpoint_id": "" if rule.endpoint_id is None else str(rule.endpoint_id),
        }
        for rule in rules
    ]


def _mapping_rules(rows: Sequence[Row]) -> tuple[list[MappingRuleIn], list[str]]:
    rules, errors = [], []
    for number, row in enumerate(rows, start=1):
        if not (row["target_key"].strip() or row["source_value"].strip()):
            continue  # an empty row left by "add rule"
        data = {
            "resource_id": row["resource_id"],
            "target_key": row["target_key"].strip(),
            "source_type": row["source_type"],
            "source_value": row["source_value"] or None,
        }
        try:
            rules.append(parse(MappingRuleIn, data, f"Mapping rule {number}: "))
        except FormInvalid as exc:
            errors.extend(exc.messages)
    return rules, errors


def _dev_rule(row: Row, number: int, with_endpoint: bool) -> DevRuleIn:
    prefix = f"Dev rule {number}: "
    override: Any = None
    if row["override_value"].strip():
        try:
            override = json.loads(row["override_value"])
        except ValueError as exc:
            raise FormInvalid(
                [f'{prefix}override value is not JSON (write text in quotes: "text")']
            ) from exc
    data: dict[str, Any] = {
        "condition_param": row["condition_param"].strip() or None,
        "condition_value": row["condition_value"] or None,
        "match": row["match"],
        "target_param": row["target_param"].strip(),
        "override_value": override,
        "active": row["active"] == "1",
    }
    if with_endpoint and row["endpoint_id"]:
        data["endpoint_id"] = row["endpoint_id"]
    return parse(DevRuleIn, data, prefix)


def dev_rules(rows: Sequence[Row], *, with_endpoint: bool) -> list[DevRuleIn]:
    """Dev rule rows as the API's rules; every bad row is reported, not just the first."""
    rules, errors = [], []
    for number, row in enumerate(rows, start=1):
        if not any(row[c].strip() for c in _DEV_TEXTS):
            continue  # an empty row left by "add rule"
        try:
            rules.append(_dev_rule(row, number, with_endpoint))
        except FormInvalid as exc:
            errors.extend(exc.messages)
    if errors:
        raise FormInvalid(errors)
    return rules


def endpoint_rules(mapping: Sequence[Row], dev: Sequence[Row]) -> EndpointRules:
    """The rules editor's tables as the body of ``PUT /endpoints/{id}/rules``."""
    rules, errors = _mapping_rules(mapping)
    devs: list[DevRuleIn] = []
    try:
        devs = dev_rules(dev, with_endpoint=False)
    except FormInvalid as exc:
        errors.extend(exc.messages)
    if errors:
        raise FormInvalid(errors)
    return parse(EndpointRules, {"mapping": rules, "dev_rules": devs})


def settings_update(values: Values, form: FormData) -> SettingsUpdate:
    """The settings form as an update; a blank password keeps the stored one."""
    data = body(values, SETTINGS)
    password = _text(form.get("smtp_password"))
    if "clear_password" in form:
        data["smtp_password"] = ""
    elif password:
        data["smtp_password"] = password
    return parse(SettingsUpdate, data)
