"""Shopify storefront answers -> ProductRecords, on a recorded page and on edge cases."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dispatch.catalog.money import MoneyError
from dispatch.catalog.providers.shopify.parse import html_to_text, parse_products, parse_suggest
from dispatch.catalog.records import MalformedPayload
from dispatch.demo.providers import load

SHOP = "https://bjjfanatics.com/"


def _page(*products: dict[str, Any]) -> dict[str, Any]:
    return {"products": list(products)}


def _product(**fields: Any) -> dict[str, Any]:
    product: dict[str, Any] = {
        "id": 1001,
        "title": "Runner",
        "handle": "runner",
        "variants": [{"id": 2001, "title": "Default Title", "price": "10.00", "available": True}],
    }
    product.update(fields)
    return product


def test_recorded_page_maps_every_product_field() -> None:
    payload = load("shopify/products_storefront_bjjfanatics.json")

    products = parse_products(payload, provider="bjj", shop_url=SHOP, currency="usd")

    assert [p.external_id for p in products] == ["6647619027042", "6628467703906"]
    first = products[0]
    assert first.provider == "bjj"
    assert first.title == "Make Z Guard Great Again by Craig Jones"
    assert first.url == "https://bjjfanatics.com/products/make-z-guard-great-again-by-craig-jones"
    assert first.brand == "Craig Jones"
    assert first.categories == ("COMBO",)
    assert first.tags == (
        "Facebook",
        "Fighter_Craig Jones",
        "MC_Guard",
        "New",
        "SC_Guard_Half_Guard",
        "Show_More_App",
    )
    assert first.release_date == "2022-01-27"
    assert first.sku == "CJMZGGA-01"
    assert len(first.images) == 4
    assert first.images[0] == (
        "https://cdn.shopify.com/s/files/1/1800/2299/products/"
        "CraigJones_MAKEZ-GUARDGREATAGAIN_CoverFRONT_1.jpg?v=1643163255"
    )
    assert first.attributes == {
        "handle": "make-z-guard-great-again-by-craig-jones",
        "product_type": "COMBO",
        "options": ["Title"],
        "updated_at": "2022-05-11T13:26:10-04:00",
    }
    assert first.raw is payload["products"][0]
    assert products[1].release_date == "2021-12-20"
    assert products[1].sku == "CJPB-01"
    assert len(products[1].images) == 5


def test_recorded_page_maps_the_default_variant_to_one_offer() -> None:
    products = parse_products(
        load("shopify/products_storefront_bjjfanatics.json"),
        provider="bjj",
        shop_url=SHOP,
        currency="usd",
    )

    (offer,) = products[0].offers
    assert offer.external_id == "39568166551650"
    assert offer.price_minor == 19700
    assert offer.currency == "USD"
    assert offer.label is None  # "Default Title" names no option
    assert offer.compare_at_minor is None
    assert offer.available is True
    assert offer.stock is None
    assert offer.sku == "CJMZGGA-01"
    assert offer.attributes == {"option1": "Default Title"}
    assert products[1].offers[0].external_id == "39512411766882"


def test_recorded_description_is_plain_text() -> None:
    products = parse_products(
        load("shopify/products_storefront_bjjfanatics.json"),
        provider="bjj",
        shop_url=SHOP,
        currency="USD",
    )

    description = products[0].description
    assert description is not None
    assert description.startswith("Craig Jones is one of the most popular and in-demand")
    assert "Dynamic & Modern Z Guard" in description  # &amp; decoded
    assert "<" not in description  # tags gone
    assert "split" not in description  # the <!-- split --> comment too
    assert "  " not in description
    assert "\n" not in description
    assert "thorough Craig shows you" in description  # </p><ul><li> leaves a space
    assert description.endswith("REINFORCED HALF GUARD $197")


def test_the_page_after_the_last_is_empty() -> None:
    payload = load("shopify/products_page_empty.json")

    assert parse_products(payload, provider="s", shop_url=SHOP, currency="USD") == []


def test_variants_become_offers_with_options_and_compare_at() -> None:
    product = _product(
        options=[{"name": "Size"}, {"name": "Colour"}],
        variants=[
            {"id": 1, "title": "9 / Black", "option1": "9", "option2": "Black", "option3": None,
             "price": "150.00", "compare_at_price": "180.00", "available": True, "sku": ""},
            {"id": 2, "title": "10 / Black", "option1": "10", "option2": "Black",
             "price": "150.00", "compare_at_price": "150.00", "available": False, "sku": "R-10"},
            {"id": 3, "title": "11 / Black", "option1": "11", "option2": "Black",
             "price": "150.00", "compare_at_price": "99.00", "sku": "R-11"},
        ],
    )  # fmt: skip

    (record,) = parse_products(_page(product), provider="s", shop_url=SHOP, currency="USD")

    first, second, third = record.offers
    assert (first.label, first.price_minor, first.compare_at_minor) == ("9 / Black", 15000, 18000)
    assert first.attributes == {"option1": "9", "option2": "Black"}
    assert first.sku is None
    assert second.compare_at_minor is None  # equal to the price: no discount
    assert third.compare_at_minor is None  # below the price: stale
    assert [o.available for o in record.offers] == [True, False, False]
    assert record.sku == "R-10"  # the first variant with a sku
    assert record.attributes["options"] == ["Size", "Colour"]


def test_prices_follow_the_currency_exponent() -> None:
    product = _product(variants=[{"id": 1, "price": "1299", "compare_at_price": "1500"}])

    (record,) = parse_products(_page(product), provider="s", shop_url=SHOP, currency="JPY")

    assert record.offers[0].price_minor == 1299
    assert record.offers[0].compare_at_minor == 1500
    assert record.offers[0].currency == "JPY"


def test_a_bad_price_costs_only_that_offer_its_price() -> None:
    product = _product(
        variants=[
            {"id": 1, "price": "call us", "compare_at_price": "abc"},
            {"id": 2, "price": "-3.00"},
            {"id": 3, "price": ["1"]},
            {"id": 4, "price": "12.50"},
        ]
    )

    (record,) = parse_products(_page(product), provider="s", shop_url=SHOP, currency="USD")

    assert [o.price_minor for o in record.offers] == [None, None, None, 1250]
    assert record.offers[0].compare_at_minor is None


def test_variants_without_an_id_are_dropped() -> None:
    product = _product(
        variants=[{"title": "9", "price": "1.00"}, "junk", {"id": True}, {"id": 7, "price": "2.00"}]
    )

    (record,) = parse_products(_page(product), provider="s", shop_url=SHOP, currency="USD")

    assert [o.external_id for o in record.offers] == ["7"]


def test_admin_api_tags_are_a_comma_joined_string() -> None:
    product = _product(tags="sale, jordan ,, high-top")

    (record,) = parse_products(_page(product), provider="s", shop_url=SHOP, currency="USD")

    assert record.tags == ("sale", "jordan", "high-top")


def test_bad_optional_fields_are_dropped_not_fatal() -> None:
    product = _product(
        vendor="",
        product_type=None,
        body_html="<p> </p>",
        published_at=20220127,
        tags={"not": "a list"},
        images=[{"src": ""}, {"id": 1}, "https://cdn.example/a.jpg"],
        variants=[{"id": 1, "price": "5.00", "available": "yes"}],
    )

    (record,) = parse_products(_page(product), provider="s", shop_url=SHOP, currency="USD")

    assert record.brand is None
    assert record.categories == ()
    assert record.description is None
    assert record.release_date is None
    assert record.tags == ()
    assert record.images == ("https://cdn.example/a.jpg",)
    assert record.offers[0].available is False  # only a JSON true means available
    assert "product_type" not in record.attributes


def test_a_string_id_is_kept_as_text() -> None:
    (record,) = parse_products(
        _page(_product(id="gid-1")), provider="s", shop_url=SHOP, currency="USD"
    )

    assert record.external_id == "gid-1"


def test_a_product_without_handle_has_no_url() -> None:
    (record,) = parse_products(
        _page(_product(handle=None)), provider="s", shop_url=SHOP, currency="USD"
    )

    assert record.url is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "payload: expected an object, got list"),
        ("<html>", "payload: expected an object, got str"),
        ({}, "products is missing"),
        ({"products": {"id": 1}}, "products: expected a list, got dict"),
        ({"products": [1]}, r"products\[0\]: expected an object"),
        (_page(_product(), _product(id=None)), r"products\[1\]\.id is missing"),
        (_page(_product(id=True)), r"products\[0\]\.id is missing or not an id"),
        (_page(_product(id=12.5)), r"products\[0\]\.id"),
        (_page(_product(title="  ")), r"products\[0\]\.title is missing or empty"),
        (_page(_product(title=42)), r"products\[0\]\.title"),
    ],
)
def test_malformed_pages_are_refused(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_products(payload, provider="s", shop_url=SHOP, currency="USD")


def test_a_shop_currency_is_required() -> None:
    with pytest.raises(MoneyError):
        parse_products(_page(_product()), provider="s", shop_url=SHOP, currency="")
    with pytest.raises(MoneyError):
        parse_products(_page(_product()), provider="s", shop_url=SHOP, currency="dollars")


def test_suggest_answer_maps_products_and_variants() -> None:
    payload = load("shopify/suggest_jordan.json")

    first, second = parse_suggest(
        payload, provider="s", shop_url="https://shop.example", currency="USD"
    )

    assert first.external_id == "7100000000001"
    assert first.title == "Invented Jordan High 'Sail'"
    assert first.url == "https://shop.example/products/invented-jordan-high-sail"
    assert first.brand == "Jordan"
    assert first.categories == ("Sneakers",)
    assert first.tags == ("jordan", "high-top", "sale")
    assert first.description == "Invented high-top for Dispatch's tests. Leather upper."
    assert first.images == (
        "https://cdn.shopify.com/s/files/1/0000/0001/products/"
        "invented-jordan-high-sail.jpg?v=1700000000",
    )
    assert first.sku == "INV-JH-SAIL-9"
    offers = [
        (o.external_id, o.label, o.price_minor, o.compare_at_minor, o.available)
        for o in first.offers
    ]
    assert offers == [
        ("41000000000011", "9", 15000, 18000, True),
        ("41000000000012", "10", 15000, 18000, False),
    ]
    assert first.raw is payload["resources"]["results"]["products"][0]
    assert second.url == "https://shop.example/products/invented-jordan-socks"
    assert (second.brand, second.categories, second.images) == (None, (), ())
    assert second.description is None
    assert (second.offers[0].label, second.offers[0].sku) == (None, None)
    assert second.offers[0].price_minor == 1800


def test_suggest_builds_the_url_from_the_handle_when_none_is_given() -> None:
    payload = {"resources": {"results": {"products": [_product(url=None, handle="h")]}}}

    (record,) = parse_suggest(payload, provider="s", shop_url=SHOP, currency="USD")

    assert record.url == "https://bjjfanatics.com/products/h"


def test_suggest_keeps_an_absolute_url() -> None:
    payload = {"resources": {"results": {"products": [_product(url="https://cdn.example/p/x")]}}}

    (record,) = parse_suggest(payload, provider="s", shop_url=SHOP, currency="USD")

    assert record.url == "https://cdn.example/p/x"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"resources": {}}, "resources.results is missing"),
        ({"resources": {"results": []}}, "resources.results: expected an object"),
        ({"resources": {"results": {"products": None}}}, "resources.results.products: expected"),
        (
            {"resources": {"results": {"products": [{"title": "x"}]}}},
            r"resources\.results\.products\[0\]\.id is missing",
        ),
    ],
)
def test_malformed_suggest_answers_are_refused(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_suggest(payload, provider="s", shop_url=SHOP, currency="USD")


def test_parsing_does_not_change_the_payload() -> None:
    payload = load("shopify/products_storefront_bjjfanatics.json")
    before = copy.deepcopy(payload)

    parse_products(payload, provider="s", shop_url=SHOP, currency="USD")

    assert payload == before


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<ul><li>one</li><li>two</li></ul>", "one two"),
        ("<b>Wo</b>rd", "Wo rd"),  # markup inside a word splits it (one regex pass, fast)
        ("<p>end</p>after", "end after"),
        ("a<br>b<br/>c", "a b c"),
        ("Fish &amp; Chips&nbsp;&#39;n&#39; peas", "Fish & Chips 'n' peas"),
        ("<p>kept</p><script>var x = '<p>';</script><style>p {}</style>", "kept"),
        ("<!-- split --><p>  spaced\n\n out </p>", "spaced out"),
        ("<p> </p>", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_html_to_text(html: object, text: str | None) -> None:
    assert html_to_text(html) == text
