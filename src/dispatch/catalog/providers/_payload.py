"""Readers of decoded JSON shared by the provider parsers: one version of each, vendor-neutral.

The strict readers (``mapping``, ``list_at``) raise MalformedPayload naming where in the
payload the shape broke; the lenient ones (``text``, ``identifier``, ``strings``, ``money``,
``html_to_text``) give None or an empty tuple for a value they cannot read.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from dispatch.catalog.money import MoneyError, currency_code, to_minor
from dispatch.catalog.records import MalformedPayload

# Comments, script/style/template blocks with their content, and every other tag, matched in
# one pass (each becomes a space). Markup inside a word ("<b>Wo</b>rd") splits it: a trade
# for speed, as html.parser read a storefront page's descriptions at ~1,500 products/s.
_MARKUP = re.compile(
    r"<(?:!--.*?(?:-->|$)|(script|style|template)\b.*?(?:</\1\s*>|$)|[^>]*>)",
    re.DOTALL | re.IGNORECASE,
)


def mapping(value: object, where: str) -> dict[str, Any]:
    """``value`` as a JSON object; MalformedPayload naming ``where`` if it is not one."""
    if not isinstance(value, dict):
        raise MalformedPayload(f"{where}: expected an object, got {type(value).__name__}")
    return value


def list_at(payload: object, *keys: str) -> list[Any]:
    """The list found by following ``keys`` down nested objects; MalformedPayload if absent."""
    node, where = payload, "payload"
    for key in keys:
        parent = mapping(node, where)
        where = key if where == "payload" else f"{where}.{key}"
        if key not in parent:
            raise MalformedPayload(f"{where} is missing")
        node = parent[key]
    if not isinstance(node, list):
        raise MalformedPayload(f"{where}: expected a list, got {type(node).__name__}")
    return node


def text(value: object) -> str | None:
    """A string stripped of surrounding whitespace; None for a blank string or a non-string."""
    return (value.strip() or None) if isinstance(value, str) else None


def identifier(value: object) -> str | None:
    """An id sent as an integer or a non-blank string, as a string; None otherwise."""
    if isinstance(value, bool):
        return None
    return str(value) if isinstance(value, int) else text(value)


def strings(values: object) -> tuple[str, ...]:
    """The non-blank strings of a list, stripped; an empty tuple for anything but a list."""
    if not isinstance(values, list):
        return ()
    return tuple(found for value in values if (found := text(value)))


def money(amount: object) -> tuple[int | None, str | None]:
    """``(minor units, currency)`` of a ``{"value": <major units>, "currency": ...}`` object."""
    # One unreadable price leaves its offer without a price; it does not sink the page.
    if not isinstance(amount, dict):
        return None, None
    value = amount.get("value")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, None
    try:
        currency = currency_code(amount.get("currency"))
        if currency is None:
            return None, None
        # The value is in major units: "value": 100 is 100.00 EUR (Discogs, eBay).
        minor = to_minor(value, currency)
    except MoneyError:
        return None, None
    if minor is None or minor < 0:
        return None, currency
    return minor, currency


def html_to_text(html: object) -> str | None:
    """Visible text of an HTML fragment, entities decoded, whitespace collapsed; None if empty."""
    if not isinstance(html, str):
        return None
    visible = _MARKUP.sub(" ", html)
    if "&" in visible:
        visible = unescape(visible)
    return " ".join(visible.split()) or None
