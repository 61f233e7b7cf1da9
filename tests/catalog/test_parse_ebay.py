"""eBay Browse API answers -> ProductRecords, error text and the application token."""

from __future__ import annotations

from typing import Any

import pytest

from dispatch.catalog.providers.ebay.parse import parse_error, parse_search, parse_token
from dispatch.catalog.records import MalformedPayload
from dispatch.demo.providers import load


def _page(*items: object) -> dict[str, Any]:
    return {"total": len(items), "itemSummaries": list(items)}


def _item(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "itemId": "v1|1|0",
        "title": "Sneakers",
        "price": {"value": "10.00", "currency": "USD"},
    }
    item.update(fields)
    return item


def test_search_page_maps_a_discounted_item() -> None:
    payload = load("ebay/item_summary_search_sneakers.json")

    products, next_url = parse_search(payload, provider="ebay")

    assert next_url == (
        "https://api.ebay.com/buy/browse/v1/item_summary/search?q=sneakers&limit=4&offset=4"
    )
    assert [p.external_id for p in products] == [
        "v1|110000000001|0",
        "v1|110000000002|0",
        "v1|110000000003|0",
        "v1|110000000004|0",
    ]
    first = products[0]
    assert first.provider == "ebay"
    assert first.title == "Invented Runner 90 Sneakers Men's Size 10 White"
    assert first.url == "https://www.ebay.com/itm/110000000001"
    assert [image.split("/")[-2] for image in first.images] == [
        "AAAAAAAAAAAAAAA1",
        "AAAAAAAAAAAAAAA2",
        "AAAAAAAAAAAAAAA3",
    ]
    assert first.categories == ("Athletic Shoes", "Men's Shoes")
    assert first.release_date is None
    assert first.gtin is None
    assert first.attributes == {
        "condition": "New with box",
        "condition_id": "1000",
        "buying_options": ["FIXED_PRICE", "BEST_OFFER"],
        "seller": "example_kicks",
        "seller_feedback_percentage": "99.5",
        "seller_feedback_score": 1204,
        "item_location_country": "US",
        "epid": "1000000001",
        "legacy_item_id": "110000000001",
        "shipping_minor": 1250,
        "shipping_currency": "USD",
        "item_creation_date": "2024-03-01T10:15:00.000Z",
    }
    (offer,) = first.offers
    assert offer.external_id == "v1|110000000001|0"
    assert (offer.price_minor, offer.currency, offer.compare_at_minor) == (8999, "USD", 12000)
    assert (offer.available, offer.stock) == (True, None)
    assert first.raw is payload["itemSummaries"][0]


def test_search_page_maps_an_auction_a_pound_item_and_a_gtin() -> None:
    products, _ = parse_search(load("ebay/item_summary_search_sneakers.json"), provider="ebay")

    auction, pounds, plain = products[1], products[2], products[3]
    assert auction.offers[0].price_minor == 5200  # the current bid, not the 40.00 start
    assert auction.offers[0].compare_at_minor is None
    assert auction.attributes["bid_count"] == 7
    assert auction.attributes["item_end_date"] == "2024-03-08T21:00:00.000Z"
    assert auction.attributes["shipping_minor"] == 0
    assert (pounds.offers[0].price_minor, pounds.offers[0].currency) == (6450, "GBP")
    assert (pounds.attributes["shipping_minor"], pounds.attributes["shipping_currency"]) == (
        399,
        "GBP",
    )
    assert pounds.attributes["item_location_country"] == "GB"
    assert "bid_count" not in pounds.attributes
    assert plain.gtin == "0000000000017"
    assert "shipping_minor" not in plain.attributes
    assert "epid" not in plain.attributes


def test_an_empty_page_has_no_item_list() -> None:
    payload = {"href": "https://api.ebay.com/…", "total": 0, "limit": 50, "offset": 0}

    assert parse_search(payload, provider="ebay") == ([], None)


def test_bad_prices_cost_only_their_item_the_price() -> None:
    page = _page(
        _item(itemId="a", price={"value": "abc", "currency": "USD"}),
        _item(itemId="b", price={"value": "5.00", "currency": "US Dollar"}),
        _item(itemId="c", price=None),
        _item(itemId="d", price={"value": 7, "currency": "jpy"}),
        _item(
            itemId="e",
            marketingPrice={"originalPrice": {"value": "20.00", "currency": "EUR"}},
        ),
    )

    products, _ = parse_search(page, provider="ebay")

    offers = [p.offers[0] for p in products]
    assert [(o.price_minor, o.currency) for o in offers] == [
        (None, None),
        (None, None),
        (None, None),
        (7, "JPY"),
        (1000, "USD"),
    ]
    assert offers[4].compare_at_minor is None  # a EUR reference for a USD price


def test_optional_fields_of_the_wrong_type_are_dropped() -> None:
    item = _item(
        image="https://i.ebayimg.com/x.jpg",
        additionalImages={"imageUrl": "x"},
        categories=[{"categoryName": 5}, "Shoes", {"categoryName": "Shoes"}],
        seller="someone",
        bidCount="7",
        buyingOptions="AUCTION",
        itemWebUrl=None,
    )

    (product,), _ = parse_search(_page(item), provider="ebay")

    assert product.images == ()
    assert product.categories == ("Shoes",)
    assert product.url is None
    assert product.attributes == {}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "payload: expected an object, got list"),
        ({"errors": [{"errorId": 1001}]}, "itemSummaries is missing"),
        ({"total": "3"}, "itemSummaries is missing"),
        ({"total": 1, "itemSummaries": {}}, "itemSummaries: expected a list, got dict"),
        (_page(_item(), "item"), r"itemSummaries\[1\]: expected an object, got str"),
        (_page(_item(itemId=None)), r"itemSummaries\[0\]\.itemId is missing"),
        (_page(_item(itemId=123)), r"itemSummaries\[0\]\.itemId is missing"),
        (_page(_item(title="")), r"itemSummaries\[0\]\.title is missing"),
    ],
)
def test_malformed_pages_are_refused(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_search(payload, provider="ebay")


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (
            {
                "errors": [
                    {
                        "errorId": 11001,
                        "domain": "API_BROWSE",
                        "category": "REQUEST",
                        "message": "Invalid value for header X-EBAY-C-MARKETPLACE-ID.",
                    },
                    {"errorId": 12000, "message": "second"},
                ]
            },
            "11001: Invalid value for header X-EBAY-C-MARKETPLACE-ID.",
        ),
        ({"errors": [{"message": "No id"}]}, "No id"),
        ({"errors": [{"errorId": 1}]}, None),
        ({"errors": []}, None),
        ({"errors": "boom"}, None),
        ({}, None),
        ("Service Unavailable", None),
    ],
)
def test_parse_error(payload: object, text: str | None) -> None:
    assert parse_error(payload) == text


def test_parse_token_reads_the_fixture() -> None:
    token, expires_in = parse_token(load("ebay/token.json"))

    assert token.startswith("v^1.1#")
    assert expires_in == 7200


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "payload: expected an object"),
        ({"expires_in": 7200}, "access_token is missing"),
        ({"access_token": "", "expires_in": 7200}, "access_token is missing"),
        ({"access_token": "t"}, "expires_in: expected seconds, got None"),
        ({"access_token": "t", "expires_in": "7200"}, "expires_in: expected seconds, got '7200'"),
        ({"access_token": "t", "expires_in": True}, "expires_in"),
        ({"access_token": "t", "expires_in": 0}, "expires_in"),
    ],
)
def test_parse_token_refuses_malformed_answers(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_token(payload)
