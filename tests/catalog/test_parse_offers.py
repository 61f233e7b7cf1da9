"""Offers-service answers -> OfferRecords, the access token and its expiry, error details."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from dispatch.catalog.money import MoneyError
from dispatch.catalog.providers.offers.parse import (
    detail,
    parse_access_token,
    parse_offers,
    parse_registered,
)
from dispatch.catalog.records import MalformedPayload
from dispatch.demo.providers import load

PRODUCT_ID = "4b0b5b8e-5d0f-4c2b-9d8c-2f1f1f7f5a10"


def _segment(data: object) -> str:
    raw = json.dumps(data, separators=(",", ": ")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jwt(claims: object) -> str:
    return f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(claims)}.c2lnbmF0dXJl"


def test_offers_fixture() -> None:
    offers = parse_offers(load("offers/offers_product.json"), currency="czk")

    assert [o.external_id for o in offers] == [
        "0a9f72ef-4ec0-43be-a40a-90325f7b871e",
        "33dd8ed3-9a79-4542-a4a8-cde0c2cc3ce6",
        "dccc6f2c-c7ad-4d71-8cd4-4a8fc131b58e",
    ]
    assert [o.price_minor for o in offers] == [12990, 11450, 13500]
    assert [o.stock for o in offers] == [7, 0, 112]
    assert [o.available for o in offers] == [True, False, True]
    assert {o.currency for o in offers} == {"CZK"}
    assert {o.compare_at_minor for o in offers} == {None}


def test_no_offers_is_an_empty_list() -> None:
    assert parse_offers([], currency="USD") == []


def test_the_currency_is_required() -> None:
    with pytest.raises(MoneyError):
        parse_offers([], currency="")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"offers": []}, "payload: expected a list, got dict"),
        ([PRODUCT_ID], r"offers\[0\]: expected an object, got str"),
        ([{"price": 1, "items_in_stock": 1}], r"offers\[0\]\.id: expected a UUID string, got None"),
        ([{"id": 5, "price": 1, "items_in_stock": 1}], r"offers\[0\]\.id: expected a UUID"),
        ([{"id": "offer-1", "price": 1, "items_in_stock": 1}], r"offers\[0\]\.id"),
        ([{"id": PRODUCT_ID, "items_in_stock": 1}], r"offers\[0\]\.price: expected an integer"),
        ([{"id": PRODUCT_ID, "price": "129.90", "items_in_stock": 1}], r"\.price: expected an"),
        ([{"id": PRODUCT_ID, "price": 12.5, "items_in_stock": 1}], r"\.price: expected an"),
        ([{"id": PRODUCT_ID, "price": True, "items_in_stock": 1}], r"\.price: expected an"),
        ([{"id": PRODUCT_ID, "price": -1, "items_in_stock": 1}], r"\.price: expected zero or"),
        ([{"id": PRODUCT_ID, "price": 1, "items_in_stock": "3"}], r"\.items_in_stock: expected"),
        ([{"id": PRODUCT_ID, "price": 1, "items_in_stock": False}], r"\.items_in_stock: expected"),
        (
            [{"id": PRODUCT_ID, "price": 1, "items_in_stock": -2}],
            r"\.items_in_stock: expected zero",
        ),
    ],
)
def test_malformed_offers_are_refused(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_offers(payload, currency="USD")


def test_access_token_expiry_comes_from_the_jwt() -> None:
    claims = {"token": "0a9f72ef-4ec0-43be-a40a-90325f7b871e", "expires": 1700000300}
    token = _jwt(claims)
    assert len(token.split(".")[1]) % 4 != 0  # the segment needs its padding restored

    parsed, expires_at = parse_access_token({"access_token": token})

    assert parsed == token
    assert expires_at == datetime(2023, 11, 14, 22, 18, 20, tzinfo=UTC)
    assert expires_at is not None
    assert expires_at.utcoffset() is not None


@pytest.mark.parametrize(
    "token",
    [
        "opaque-token",
        "a.b",
        "header.!!!not-base64!!!.sig",
        f"h.{base64.urlsafe_b64encode(b'not json').decode()}.s",
        _jwt(["expires", 1700000300]),
        _jwt({"token": "x"}),
        _jwt({"expires": "1700000300"}),
        _jwt({"expires": True}),
        _jwt({"expires": 10**20}),
    ],
)
def test_an_unreadable_expiry_is_none_not_an_error(token: str) -> None:
    assert parse_access_token({"access_token": token}) == (token, None)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("token", "payload: expected an object"),
        ({}, "access_token is missing or not a string"),
        ({"access_token": 123}, "access_token is missing or not a string"),
        ({"access_token": "  "}, "access_token is missing or not a string"),
    ],
)
def test_a_missing_access_token_is_refused(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_access_token(payload)


def test_parse_registered() -> None:
    assert parse_registered({"id": PRODUCT_ID}) == PRODUCT_ID


@pytest.mark.parametrize("payload", [{}, {"id": 5}, {"id": "product-1"}, [PRODUCT_ID]])
def test_parse_registered_refuses_malformed_answers(payload: object) -> None:
    with pytest.raises(MalformedPayload):
        parse_registered(payload)


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        ({"detail": "Product ID already registered"}, "Product ID already registered"),
        ({"detail": "Cannot generate access token because another is valid"},
         "Cannot generate access token because another is valid"),
        (
            {"detail": [
                {"loc": ["body", "id"], "msg": "value is not a valid uuid", "type": "type_error"},
                {"loc": ["body", "name"], "msg": "field required", "type": "value_error"},
            ]},
            "body.id: value is not a valid uuid; body.name: field required",
        ),
        ({"detail": [{"msg": "no location"}, 3, {"loc": ["x"]}, "plain"]}, "no location; plain"),
        ({"detail": []}, None),
        ({"detail": "  "}, None),
        ({"detail": 404}, None),
        ({}, None),
        ("Not Found", None),
        (None, None),
    ],
)  # fmt: skip
def test_detail(payload: object, text: str | None) -> None:
    assert detail(payload) == text
