"""Payload mapping: dev overrides, target building, templates and rule validation."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from dispatch.gateway.mapping import (
    MAX_PATTERN_LENGTH,
    WHOLE_PAYLOAD,
    DevRule,
    JSONValue,
    MappingError,
    MappingRule,
    build_target,
    dev_overrides,
    get_path,
    map_payload,
    render_template,
    rule_applies,
    set_path,
    validate_dev_rule,
    validate_mapping_rule,
)

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
UNIX = int(NOW.timestamp())

ITEMS: list[JSONValue] = [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}]
PAYLOAD: dict[str, JSONValue] = {
    "order": {"id": 42, "items": ITEMS},
    "customer": {"email": "ann@example.com", "vip": True, "note": None},
    "env": "staging",
}


def uuids() -> Callable[[], str]:
    """A deterministic uuid source: id-1, id-2, ..."""
    counter = itertools.count(1)
    return lambda: f"id-{next(counter)}"


def target_of(*rules: MappingRule) -> dict[str, JSONValue]:
    target, _ = build_target(PAYLOAD, rules, now=NOW, new_uuid=uuids())
    return target


# --- paths ----------------------------------------------------------------------------------


def test_get_path_walks_dicts_and_list_indexes() -> None:
    assert get_path(PAYLOAD, "order.items.1.sku") == (True, "B-2")
    assert get_path(PAYLOAD, "customer.note") == (True, None)
    assert get_path(PAYLOAD, WHOLE_PAYLOAD) == (True, PAYLOAD)


@pytest.mark.parametrize("path", ["order.items.2", "order.items.x", "env.x", "nope", "a..b", ""])
def test_get_path_reports_missing(path: str) -> None:
    assert get_path(PAYLOAD, path) == (False, None)


def test_set_path_creates_nested_dicts_and_replaces_scalars() -> None:
    target: dict[str, JSONValue] = {"a": 1, "list": [{"x": 1}]}
    set_path(target, "a.b.c", "deep")
    set_path(target, "list.0.x", 2)
    set_path(target, "list.5.y", 3)  # no such index: the list gives way to a dict
    assert target == {"a": {"b": {"c": "deep"}}, "list": {"5": {"y": 3}}}


@pytest.mark.parametrize("path", ["a..b", ".a", "a.", "", WHOLE_PAYLOAD, "a b"])
def test_set_path_rejects_bad_paths(path: str) -> None:
    with pytest.raises(MappingError):
        set_path({}, path, 1)


# --- dev rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "condition_value", "expected"),
    [
        ("equals", "staging", True),
        ("equals", "stag", False),
        ("contains", "stag", True),
        ("contains", "prod", False),
        ("regex", r"^sta.*g$", True),
        ("regex", r"^prod", False),
    ],
)
def test_rule_applies_with_each_match_kind(
    match: str, condition_value: str, expected: bool
) -> None:
    rule = DevRule("x", 1, condition_param="env", condition_value=condition_value, match=match)
    assert rule_applies(rule, PAYLOAD) is expected


def test_rule_applies_compares_non_strings_as_json() -> None:
    assert rule_applies(DevRule("x", 1, "order.id", "42", "equals"), PAYLOAD)
    assert rule_applies(DevRule("x", 1, "customer.vip", "true", "equals"), PAYLOAD)
    assert rule_applies(DevRule("x", 1, "order.items", '"sku": "B-2"', "contains"), PAYLOAD)


def test_rule_without_condition_always_applies() -> None:
    assert rule_applies(DevRule("x", 1), {})
    assert rule_applies(DevRule("x", 1, condition_param="", condition_value="ignored"), {})


def test_rule_with_empty_condition_value_needs_only_the_param() -> None:
    assert rule_applies(DevRule("x", 1, condition_param="customer.note"), PAYLOAD)
    assert rule_applies(DevRule("x", 1, "env", "", "equals"), PAYLOAD)
    assert not rule_applies(DevRule("x", 1, condition_param="customer.phone"), PAYLOAD)


def test_rule_with_missing_param_does_not_apply() -> None:
    assert not rule_applies(DevRule("x", 1, "missing.param", "staging", "contains"), PAYLOAD)


def test_unknown_match_kind_does_not_apply() -> None:
    assert not rule_applies(DevRule("x", 1, "env", "staging", "fuzzy"), PAYLOAD)


def test_regex_over_the_length_limit_is_ignored_and_refused() -> None:
    pattern = "a" * (MAX_PATTERN_LENGTH + 1)
    rule = DevRule("x", 1, "text", pattern, "regex")
    assert not rule_applies(rule, {"text": pattern})
    with pytest.raises(MappingError, match="longer than"):
        validate_dev_rule(rule)
    validate_dev_rule(DevRule("x", 1, "text", "a" * MAX_PATTERN_LENGTH, "regex"))


def test_uncompilable_regex_is_ignored_and_refused() -> None:
    for pattern in ["(unclosed", "(?=lookahead)"]:
        rule = DevRule("x", 1, "env", pattern, "regex")
        assert not rule_applies(rule, PAYLOAD)
        with pytest.raises(MappingError, match="bad regex"):
            validate_dev_rule(rule)


def test_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    rule = DevRule("x", 1, "text", "(a+)+$", "regex")
    validate_dev_rule(rule)
    assert not rule_applies(rule, {"text": "a" * 5000 + "b"})
    assert rule_applies(rule, {"text": "a" * 5000})


def test_endpoint_rules_override_client_rules_and_later_rules_win() -> None:
    client = [DevRule("env", "client-1"), DevRule("env", "client-2"), DevRule("only.client", 1)]
    endpoint = [DevRule("env", "endpoint"), DevRule("skipped", 0, "nope")]
    overrides = dev_overrides(PAYLOAD, client, endpoint)
    assert overrides == {"env": "endpoint", "only.client": 1}


def test_dev_overrides_apply_in_rule_order_for_nested_targets() -> None:
    rules = [DevRule("a.b", 1), DevRule("a", {"x": 0}), DevRule("a.b", 2)]
    result = map_payload({}, endpoint_rules=rules, now=NOW)
    assert result.working == {"a": {"x": 0, "b": 2}}


def test_conditions_see_the_incoming_payload_not_earlier_overrides() -> None:
    rules = [DevRule("env", "prod"), DevRule("flag", True, "env", "prod", "equals")]
    assert dev_overrides(PAYLOAD, rules, ()) == {"env": "prod"}


def test_dev_override_sets_nested_param_and_creates_keys() -> None:
    rules = [DevRule("customer.email", "dev@example.com"), DevRule("debug.trace", True)]
    result = map_payload(PAYLOAD, client_rules=rules, now=NOW)
    assert result.working["customer"] == {"email": "dev@example.com", "vip": True, "note": None}
    assert result.working["debug"] == {"trace": True}
    assert result.target == result.working


def test_dev_rule_with_unusable_target_is_skipped() -> None:
    assert dev_overrides(PAYLOAD, [DevRule("a..b", 1), DevRule("", 2)], ()) == {}


# --- target building ------------------------------------------------------------------------


def test_passthrough_without_rules_is_a_copy_of_the_working_payload() -> None:
    target, missing = build_target(PAYLOAD, (), now=NOW, new_uuid=uuids())
    assert target == PAYLOAD
    assert missing == ()
    assert target["order"] is not PAYLOAD["order"]


def test_from_source_copies_nested_values_and_list_items() -> None:
    target = target_of(
        MappingRule("orderId", "from_source", "order.id"),
        MappingRule("first.sku", "from_source", "order.items.0.sku"),
        MappingRule("items", "from_source", "order.items"),
    )
    assert target == {"orderId": 42, "first": {"sku": "A-1"}, "items": ITEMS}


def test_mapped_target_does_not_leak_the_source_payload() -> None:
    target = target_of(MappingRule("env", "from_source", "env"))
    assert target == {"env": "staging"}
    assert "_raw" not in target


def test_whole_payload_is_sent_only_when_mapped_explicitly() -> None:
    target = target_of(MappingRule("_raw", "from_source", WHOLE_PAYLOAD))
    assert target == {"_raw": PAYLOAD}


def test_missing_source_paths_are_reported_and_omitted() -> None:
    target, missing = build_target(
        PAYLOAD,
        [
            MappingRule("a", "from_source", "order.missing"),
            MappingRule("b", "from_source", "order.items.9"),
            MappingRule("c", "from_source", "env"),
        ],
        now=NOW,
        new_uuid=uuids(),
    )
    assert target == {"c": "staging"}
    assert missing == ("order.missing", "order.items.9")


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("42", 42),
        ("true", True),
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ('"quoted"', "quoted"),
        ("plain text", "plain text"),
        ("NaN", "NaN"),
    ],
)
def test_constant_decodes_json_or_keeps_the_string(literal: str, expected: JSONValue) -> None:
    assert target_of(MappingRule("k", "constant", literal)) == {"k": expected}


def test_uuid_and_timestamp_sources() -> None:
    target = target_of(
        MappingRule("first", "uuid"), MappingRule("second", "uuid"), MappingRule("at", "timestamp")
    )
    assert target == {"first": "id-1", "second": "id-2", "at": "2024-05-06T07:08:09+00:00"}


def test_timestamp_is_converted_to_utc_and_naive_now_is_refused() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=2)))
    target, _ = build_target({}, [MappingRule("at", "timestamp")], now=local, new_uuid=uuids())
    assert target == {"at": "2024-05-06T07:08:09+00:00"}
    with pytest.raises(ValueError, match="timezone-aware"):
        build_target(
            {}, [MappingRule("at", "timestamp")], now=NOW.replace(tzinfo=None), new_uuid=uuids()
        )


def test_none_values_are_dropped() -> None:
    target = target_of(
        MappingRule("note", "from_source", "customer.note"),
        MappingRule("nothing", "constant", "null"),
        MappingRule("unset", "constant"),
        MappingRule("kept", "constant", "0"),
    )
    assert target == {"kept": 0}


def test_unusable_mapping_rules_are_skipped() -> None:
    target = target_of(
        MappingRule("k", "sql", "DROP TABLE"),
        MappingRule("a..b", "constant", "1"),
        MappingRule("ok", "constant", "1"),
    )
    assert target == {"ok": 1}


# --- templates ------------------------------------------------------------------------------


def test_template_fills_paths_and_builtins() -> None:
    text, missing = render_template(
        "order {order.id} for {customer.email} vip={customer.vip} sku={order.items.1.sku} "
        "{uuid}/{uuid} at {timestamp} ({unix})",
        PAYLOAD,
        now=NOW,
        new_uuid=uuids(),
    )
    assert text == (
        "order 42 for ann@example.com vip=true sku=B-2 id-1/id-1 at 2024-05-06T07:08:09+00:00 "
        f"({UNIX})"
    )
    assert missing == ()


def test_template_builtins_win_over_payload_keys() -> None:
    text, _ = render_template("{uuid}", {"uuid": "client-chosen"}, now=NOW, new_uuid=uuids())
    assert text == "id-1"


def test_template_escapes_braces() -> None:
    text, _ = render_template('{{"id": {order.id}}} {{{env}}}', PAYLOAD, now=NOW, new_uuid=uuids())
    assert text == '{"id": 42} {staging}'


def test_template_missing_placeholders_render_empty_and_are_reported() -> None:
    text, missing = render_template(
        "[{a.b}][{order.nope}][{a.b}]", PAYLOAD, now=NOW, new_uuid=uuids()
    )
    assert text == "[][][]"
    assert missing == ("a.b", "order.nope")


def test_template_does_not_evaluate_format_expressions() -> None:
    text, missing = render_template(
        "{env.__class__}{order[id]}{0}", PAYLOAD, now=NOW, new_uuid=uuids()
    )
    assert text == ""
    assert missing == ("env.__class__", "order[id]", "0")


def test_template_with_stray_braces_renders_them_literally() -> None:
    text, _ = render_template("a } b { c", {}, now=NOW, new_uuid=uuids())
    assert text == "a } b { c"


def test_template_source_type_reports_missing() -> None:
    target, missing = build_target(
        PAYLOAD, [MappingRule("msg", "template", "{env}:{gone}")], now=NOW, new_uuid=uuids()
    )
    assert target == {"msg": "staging:"}
    assert missing == ("gone",)


# --- map_payload ----------------------------------------------------------------------------


def test_map_payload_overrides_then_maps_without_mutating_inputs() -> None:
    source = copy.deepcopy(PAYLOAD)
    override: dict[str, JSONValue] = {"nested": ["value"]}
    client_rules = [DevRule("customer.email", override, "env", "stag")]
    rules = [
        MappingRule("email", "from_source", "customer.email"),
        MappingRule("items", "from_source", "order.items"),
    ]
    result = map_payload(source, client_rules=client_rules, mapping_rules=rules, now=NOW)

    assert result.overrides == {"customer.email": override}
    assert result.target == {"email": override, "items": ITEMS}
    for outputs, path in [(result.target, "email.nested"), (result.working, "order.items")]:
        _, value = get_path(outputs, path)
        assert isinstance(value, list)
        value.clear()
    assert source == PAYLOAD
    assert override == {"nested": ["value"]}
    assert result.overrides["customer.email"] == {"nested": ["value"]}


def test_map_payload_works_without_a_client() -> None:
    result = map_payload(PAYLOAD, now=NOW)
    assert result.target == PAYLOAD
    assert result.overrides == {}
    assert result.missing == ()


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        DevRule("x", 1, "env", "a", "like"),
        DevRule("", 1),
        DevRule("a..b", 1),
        DevRule(WHOLE_PAYLOAD, 1),
        DevRule("x", 1, ".env", "a"),
        DevRule("x", 1, "env", "(", "regex"),
    ],
)
def test_validate_dev_rule_rejects(rule: DevRule) -> None:
    with pytest.raises(MappingError):
        validate_dev_rule(rule)


def test_validate_dev_rule_accepts_usable_rules() -> None:
    validate_dev_rule(DevRule("a.b", {"x": 1}))
    validate_dev_rule(DevRule("a", None, "env", "(?i)^STAG", "regex"))
    validate_dev_rule(DevRule("a", 1, "env", "(", "contains"))  # not a regex: any text will do


@pytest.mark.parametrize(
    "rule",
    [
        MappingRule("k", "sql", "x"),
        MappingRule("", "constant", "1"),
        MappingRule("a.", "constant", "1"),
        MappingRule(WHOLE_PAYLOAD, "from_source", "env"),
        MappingRule("k", "from_source"),
        MappingRule("k", "from_source", "a..b"),
        MappingRule("k", "template"),
        MappingRule("k", "template", "{unclosed"),
        MappingRule("k", "template", "stray }"),
        MappingRule("k", "template", "{}"),
        MappingRule("k", "template", "{a..b}"),
    ],
)
def test_validate_mapping_rule_rejects(rule: MappingRule) -> None:
    with pytest.raises(MappingError):
        validate_mapping_rule(rule)


def test_validate_mapping_rule_accepts_usable_rules() -> None:
    validate_mapping_rule(MappingRule("a.b", "from_source", "order.items.0.sku"))
    validate_mapping_rule(MappingRule("raw", "from_source", WHOLE_PAYLOAD))
    validate_mapping_rule(MappingRule("k", "constant"))
    validate_mapping_rule(MappingRule("k", "uuid"))
    validate_mapping_rule(MappingRule("k", "timestamp"))
    validate_mapping_rule(MappingRule("k", "template", "{{literal}} {uuid} {order.id} {unix}"))
