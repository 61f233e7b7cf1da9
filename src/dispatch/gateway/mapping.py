"""Payload mapping: dev overrides on the incoming payload, then per-resource target payloads.

Pure functions, no I/O. ``validate_*`` raise :class:`MappingError` when a rule is saved; at
delivery time an unusable rule is skipped instead, so one bad row never stops a delivery.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeAlias

import re2

JSONValue: TypeAlias = dict[str, "JSONValue"] | list["JSONValue"] | str | int | float | bool | None

MATCH_KINDS: tuple[str, ...] = ("equals", "contains", "regex")
SOURCE_TYPES: tuple[str, ...] = ("from_source", "constant", "uuid", "timestamp", "template")
MAX_PATTERN_LENGTH = 200
WHOLE_PAYLOAD = "$"
TEMPLATE_BUILTINS: tuple[str, ...] = ("uuid", "timestamp", "unix")

# Permissive on purpose (payload keys come from clients); what matters is that a segment is
# non-empty and cannot be confused with the dot separator or template braces.
_SEGMENT = re.compile(r"[^\s.{}\x00-\x1f\x7f]+")

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad user pattern is reported to the caller, not to stderr


class MappingError(ValueError):
    """A rule that cannot be used (bad pattern, bad path, unknown type)."""


class _Searcher(Protocol):
    def search(self, text: str) -> object: ...


@dataclass(frozen=True, slots=True)
class DevRule:
    """Development override: set ``target_param`` when the condition holds."""

    target_param: str
    override_value: JSONValue
    condition_param: str | None = None
    condition_value: str | None = None
    match: str = "contains"


@dataclass(frozen=True, slots=True)
class MappingRule:
    """One key of a resource's target payload and where its value comes from."""

    target_key: str
    source_type: str
    source_value: str | None = None


@dataclass(frozen=True, slots=True)
class MappingResult:
    """The overridden payload, the overrides applied, the target payload and what was missing."""

    working: dict[str, JSONValue]
    overrides: dict[str, JSONValue]
    target: dict[str, JSONValue]
    missing: tuple[str, ...]


def is_path(path: str) -> bool:
    """Whether ``path`` is ``$`` or non-empty segments separated by dots."""
    return path == WHOLE_PAYLOAD or all(_SEGMENT.fullmatch(part) for part in path.split("."))


def _is_settable(path: str) -> bool:
    return path != WHOLE_PAYLOAD and is_path(path)


def _compile_regex(pattern: str) -> _Searcher:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise MappingError(f"regex longer than {MAX_PATTERN_LENGTH} characters")
    try:
        compiled: _Searcher = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise MappingError(f"bad regex: {text}") from exc
    return compiled


@functools.lru_cache(maxsize=512)
def _cached_regex(pattern: str) -> _Searcher | None:
    # Caches refusals too, so a stored bad pattern costs one compile, not one per delivery.
    try:
        return _compile_regex(pattern)
    except MappingError:
        return None


def validate_dev_rule(rule: DevRule) -> None:
    """Raise MappingError unless ``rule`` can be applied."""
    if rule.match not in MATCH_KINDS:
        raise MappingError(f"match must be one of {', '.join(MATCH_KINDS)}")
    if not _is_settable(rule.target_param):
        raise MappingError(f"bad target_param: {rule.target_param!r}")
    if rule.condition_param and not is_path(rule.condition_param):
        raise MappingError(f"bad condition_param: {rule.condition_param!r}")
    if rule.match == "regex" and rule.condition_value:
        _compile_regex(rule.condition_value)


def validate_mapping_rule(rule: MappingRule) -> None:
    """Raise MappingError unless ``rule`` can build a target key."""
    if rule.source_type not in SOURCE_TYPES:
        raise MappingError(f"source_type must be one of {', '.join(SOURCE_TYPES)}")
    if not _is_settable(rule.target_key):
        raise MappingError(f"bad target_key: {rule.target_key!r}")
    if rule.source_type == "from_source" and not (rule.source_value and is_path(rule.source_value)):
        raise MappingError(f"from_source needs a path, got {rule.source_value!r}")
    if rule.source_type == "template":
        if rule.source_value is None:
            raise MappingError("template needs source_value")
        for is_field, text in _scan_template(rule.source_value, strict=True):
            if is_field and text not in TEMPLATE_BUILTINS and not is_path(text):
                raise MappingError(f"bad template placeholder: {{{text}}}")


def _copy_json(value: JSONValue | Mapping[str, JSONValue]) -> JSONValue:
    # Faster than copy.deepcopy for plain JSON, and turns any Mapping into a dict.
    if isinstance(value, Mapping):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


def _copy_object(value: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    return {key: _copy_json(item) for key, item in value.items()}


def _list_index(items: list[JSONValue], segment: str) -> int | None:
    if segment.isascii() and segment.isdigit() and int(segment) < len(items):
        return int(segment)
    return None


def get_path(payload: JSONValue | Mapping[str, JSONValue], path: str) -> tuple[bool, JSONValue]:
    """Return ``(found, value)`` at a dotted path; the value is not copied."""
    current = payload
    if path != WHOLE_PAYLOAD:
        for segment in path.split("."):
            if isinstance(current, Mapping) and segment in current:
                current = current[segment]
            elif isinstance(current, list) and (index := _list_index(current, segment)) is not None:
                current = current[index]
            else:
                return False, None
    if isinstance(current, Mapping) and not isinstance(current, dict):
        return True, dict(current)
    return True, current


def _child(container: dict[str, JSONValue] | list[JSONValue], segment: str) -> JSONValue:
    if isinstance(container, dict):
        return container.get(segment)
    index = _list_index(container, segment)
    return None if index is None else container[index]


def _put(container: dict[str, JSONValue] | list[JSONValue], segment: str, value: JSONValue) -> None:
    if isinstance(container, dict):
        container[segment] = value
    else:
        container[int(segment)] = value  # set_path only descends into a list at an existing index


def set_path(target: dict[str, JSONValue], path: str, value: JSONValue) -> None:
    """Set ``value`` at a dotted path, creating dicts where nothing usable is in the way."""
    if not _is_settable(path):
        raise MappingError(f"bad path: {path!r}")
    segments = path.split(".")
    container: dict[str, JSONValue] | list[JSONValue] = target
    for segment, following in itertools.pairwise(segments):
        child = _child(container, segment)
        # An override must land: a scalar, or a list without that index, is replaced by a dict.
        if not isinstance(child, dict | list) or (
            isinstance(child, list) and _list_index(child, following) is None
        ):
            child = {}
            _put(container, segment, child)
        container = child
    _put(container, segments[-1], value)


def _as_text(value: JSONValue) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _matches(kind: str, expected: str, text: str) -> bool:
    if kind == "equals":
        return text == expected
    if kind == "contains":
        return expected in text
    if kind == "regex":
        regex = _cached_regex(expected)
        return regex is not None and regex.search(text) is not None
    return False


def rule_applies(rule: DevRule, payload: Mapping[str, JSONValue]) -> bool:
    """Whether ``rule``'s condition holds for ``payload``; never raises."""
    if not rule.condition_param:
        return True
    found, value = get_path(payload, rule.condition_param)
    if not found:
        return False
    if not rule.condition_value:
        return True
    return _matches(rule.match, rule.condition_value, _as_text(value))


def dev_overrides(
    payload: Mapping[str, JSONValue],
    client_rules: Sequence[DevRule],
    endpoint_rules: Sequence[DevRule],
) -> dict[str, JSONValue]:
    """Map each target_param to the value of the last applicable rule, endpoint rules last."""
    overrides: dict[str, JSONValue] = {}
    for rule in itertools.chain(client_rules, endpoint_rules):
        if _is_settable(rule.target_param) and rule_applies(rule, payload):
            # Re-insert so applying in dict order equals applying the winning rules in sequence,
            # which matters when one target nests inside another ("a" then "a.b").
            overrides.pop(rule.target_param, None)
            overrides[rule.target_param] = _copy_json(rule.override_value)
    return overrides


def _utc(now: datetime) -> datetime:
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _scan_template(template: str, *, strict: bool) -> Iterator[tuple[bool, str]]:
    """Yield ``(is_field, text)`` pieces; stray braces are literal unless ``strict``."""
    start = position = 0
    while position < len(template):
        char = template[position]
        pair = template[position : position + 2]
        if pair in ("{{", "}}"):
            yield False, template[start:position] + char
            start = position = position + 2
            continue
        if char == "{":
            close = template.find("}", position + 1)
            opened = template.find("{", position + 1)
            if close != -1 and (opened == -1 or close < opened):
                yield False, template[start:position]
                yield True, template[position + 1 : close]
                start = position = close + 1
                continue
            if strict:
                raise MappingError(f"unclosed '{{' at {position} in template")
        elif char == "}" and strict:
            raise MappingError(f"single '}}' at {position} in template; write '}}}}'")
        position += 1
    yield False, template[start:]


def render_template(
    template: str,
    payload: Mapping[str, JSONValue],
    *,
    now: datetime,
    new_uuid: Callable[[], str],
) -> tuple[str, tuple[str, ...]]:
    """Fill ``{path}`` and built-in placeholders; return the text and the paths not found."""
    parts: list[str] = []
    missing: list[str] = []
    task_id: str | None = None
    for is_field, text in _scan_template(template, strict=False):
        # Built-ins win over payload keys of the same name so a client cannot choose its own id
        # or timestamp.
        if not is_field:
            parts.append(text)
        elif text == "uuid":
            task_id = task_id or new_uuid()  # one id per template: repeating {uuid} means the same
            parts.append(task_id)
        elif text == "timestamp":
            parts.append(_utc(now).isoformat())
        elif text == "unix":
            parts.append(str(int(_utc(now).timestamp())))
        else:
            found, value = get_path(payload, text) if is_path(text) else (False, None)
            parts.append(_as_text(value) if found else "")
            if not found:
                missing.append(text)
    return "".join(parts), tuple(dict.fromkeys(missing))


def _reject_constant(name: str) -> JSONValue:
    raise ValueError(f"{name} is not JSON")


def _decode_constant(literal: str | None) -> JSONValue:
    if literal is None:
        return None
    try:
        value: JSONValue = json.loads(literal, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return literal
    return value


def _rule_value(
    rule: MappingRule,
    working: Mapping[str, JSONValue],
    *,
    now: datetime,
    new_uuid: Callable[[], str],
) -> tuple[JSONValue, tuple[str, ...]]:
    """The value ``rule`` produces (None to omit the key) and the paths it could not find."""
    source = rule.source_value or ""
    if rule.source_type == "from_source":
        found, value = get_path(working, source) if is_path(source) else (False, None)
        return (_copy_json(value), ()) if found else (None, (source,))
    if rule.source_type == "constant":
        return _decode_constant(rule.source_value), ()
    if rule.source_type == "uuid":
        return new_uuid(), ()
    if rule.source_type == "timestamp":
        return _utc(now).isoformat(), ()
    if rule.source_type == "template":
        return render_template(source, working, now=now, new_uuid=new_uuid)
    return None, ()


def build_target(
    working: Mapping[str, JSONValue],
    rules: Sequence[MappingRule],
    *,
    now: datetime,
    new_uuid: Callable[[], str],
) -> tuple[dict[str, JSONValue], tuple[str, ...]]:
    """Build the payload for one resource: a copy of ``working`` without rules, else mapped keys."""
    if not rules:
        return _copy_object(working), ()
    target: dict[str, JSONValue] = {}
    missing: list[str] = []
    for rule in rules:
        if not _is_settable(rule.target_key):
            continue
        value, absent = _rule_value(rule, working, now=now, new_uuid=new_uuid)
        missing.extend(absent)
        if value is not None:  # the seed dropped null keys; resources rely on that
            set_path(target, rule.target_key, value)
    return target, tuple(dict.fromkeys(missing))


def map_payload(
    source: Mapping[str, JSONValue],
    *,
    client_rules: Sequence[DevRule] = (),
    endpoint_rules: Sequence[DevRule] = (),
    mapping_rules: Sequence[MappingRule] = (),
    now: datetime,
    new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> MappingResult:
    """Apply dev overrides to a copy of ``source``, then build the target payload from it."""
    overrides = dev_overrides(source, client_rules, endpoint_rules)
    working = _copy_object(source)
    for path, value in overrides.items():
        set_path(working, path, _copy_json(value))
    target, missing = build_target(working, mapping_rules, now=now, new_uuid=new_uuid)
    return MappingResult(working=working, overrides=overrides, target=target, missing=missing)


def render_json(
    value: JSONValue, names: Mapping[str, JSONValue], *, now: datetime, new_uuid: Callable[[], str]
) -> JSONValue:
    """Every string inside a JSON value rendered as a template over ``names``."""
    if isinstance(value, str):
        return render_template(value, names, now=now, new_uuid=new_uuid)[0]
    if isinstance(value, dict):
        return {
            key: render_json(item, names, now=now, new_uuid=new_uuid) for key, item in value.items()
        }
    if isinstance(value, list):
        return [render_json(item, names, now=now, new_uuid=new_uuid) for item in value]
    return value
