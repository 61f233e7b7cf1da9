"""GOAT Algolia hits -> ProductRecords with one offer each."""

from __future__ import annotations

from typing import Any

import pytest

from dispatch.catalog.money import MoneyError
from dispatch.catalog.providers.goat.parse import parse_query
from dispatch.catalog.records import MalformedPayload
from dispatch.demo.providers import load


def _answer(*hits: object, **envelope: Any) -> dict[str, Any]:
    return {"hits": list(hits), **envelope}


def _hit(**fields: Any) -> dict[str, Any]:
    hit: dict[str, Any] = {"product_template_id": 1, "name": "Test Runner", "slug": "test-runner"}
    hit.update(fields)
    return hit


def test_query_answer_maps_a_full_hit() -> None:
    payload = load("goat/algolia_query_jordan.json")

    products, pages = parse_query(payload, provider="goat")

    assert pages == 1
    assert [p.external_id for p in products] == ["900101", "900102", "900103", "900104"]
    first = products[0]
    assert first.provider == "goat"
    assert first.title == "Air Jordan 1 Retro High OG 'Harbour Slate'"
    assert first.url == (
        "https://www.goat.com/sneakers/air-jordan-1-retro-high-og-harbour-slate-dx0001-104"
    )
    assert first.brand == "Air Jordan"
    assert first.sku == first.style_code == "DX0001 104"
    assert first.categories == ("lifestyle", "shoes")
    assert first.release_date == "2019-05-04"
    assert first.description == (
        "A white leather base meets 'Harbour Slate' suede overlays. "
        "Invented for Dispatch\u2019s tests."
    )
    assert [image.split("/")[3] for image in first.images] == ["750", "375", "attachments"]
    assert first.attributes == {
        "color": "White",
        "designer": "Peter Moore",
        "silhouette": "Air Jordan 1",
        "gender": ["men"],
        "size_range": [8, 8.5, 9, 9.5, 10, 10.5, 11],
        "shoe_condition": "new_no_defects",
    }
    assert "_highlightResult" in payload["hits"][0]
    assert first.raw is payload["hits"][0]


def test_query_answer_maps_the_lowest_ask_to_one_offer() -> None:
    products, _ = parse_query(load("goat/algolia_query_jordan.json"), provider="goat")

    (sized,) = products[0].offers
    assert sized.external_id == "900101:10.5"
    assert sized.label == "10.5"
    assert sized.price_minor == 21500  # lowest_price_cents, not the instant-ship price
    assert sized.currency == "USD"
    assert sized.compare_at_minor == 17000  # retail price
    assert sized.available is True
    assert sized.stock is None

    (sold_out,) = products[1].offers
    assert sold_out.external_id == "900102:lowest"
    assert (sold_out.label, sold_out.price_minor, sold_out.available) == (None, None, False)
    assert sold_out.compare_at_minor == 21000

    (instant,) = products[2].offers
    assert instant.external_id == "900103:6"
    assert instant.price_minor == 15500  # falls back to the instant-ship price
    assert instant.available is True  # no has_stock: a price means available

    (unsized,) = products[3].offers
    assert (unsized.external_id, unsized.price_minor) == ("900104:lowest", 18900)


def test_query_answer_handles_sparse_hits() -> None:
    products, _ = parse_query(load("goat/algolia_query_jordan.json"), provider="goat")

    assert len(products[1].images) == 2  # main and grid are the same picture
    assert products[2].release_date == "2021"  # no release_date: the year
    assert products[2].description is None
    assert "shoe_condition" not in products[2].attributes
    assert products[3].release_date == "2020-02-29"
    assert products[3].images == (
        "https://image.goat.com/375/attachments/product_template_pictures/images/000/900/104/original/900104_00.png",
    )
    assert "designer" not in products[3].attributes


def test_a_product_template_record_without_slug_parses() -> None:
    # The shape of the product-template records some GOAT clients keep: "id", no slug,
    # no prices but the retail one (values invented).
    record = {
        "brand_name": "Air Jordan",
        "category": ["lifestyle"],
        "designer": "Tinker Hatfield",
        "gender": ["men"],
        "grid_picture_url": "https://image.goat.com/375/t/1.png",
        "id": 123456,
        "main_picture_url": "https://image.goat.com/750/t/1.png",
        "name": "Air Jordan 7 Retro 'Sample'",
        "original_picture_url": "https://image.goat.com/t/1.png",
        "retail_price_cents": 20000,
        "size_range": [9, 9.5, 10],
        "story_html": "A sample&#39;s story.",
    }

    (product,), pages = parse_query(_answer(record), provider="goat")

    assert pages == 0
    assert product.external_id == "123456"
    assert product.url is None
    assert product.description == "A sample's story."
    assert product.release_date is None
    (offer,) = product.offers
    assert offer.external_id == "123456:lowest"
    assert (offer.price_minor, offer.compare_at_minor, offer.available) == (None, 20000, False)


def test_identity_falls_back_to_object_id_and_title_to_slug() -> None:
    hit = {"objectID": "abc", "slug": "only-a-slug", "size": 10.0}

    (product,), _ = parse_query(_answer(hit), provider="goat", site_url="https://goat.test/")

    assert product.external_id == "abc"
    assert product.title == "only-a-slug"
    assert product.url == "https://goat.test/sneakers/only-a-slug"
    assert product.offers[0].external_id == "abc:10"  # a whole size reads "10", not "10.0"
    assert product.offers[0].label == "10"


@pytest.mark.parametrize(
    ("fields", "release_date"),
    [
        ({"release_date": "20190504"}, "2019-05-04"),
        ({"release_date": "2019-02-30T00:00:00.000Z", "release_date_year": 2019}, "2019"),
        ({"release_date": "soon", "release_date_year": "2024"}, "2024"),
        ({"release_date": None, "release_date_year": True}, None),
        ({"release_date_year": 0}, None),
    ],
)
def test_release_date(fields: dict[str, Any], release_date: str | None) -> None:
    (product,), _ = parse_query(_answer(_hit(**fields)), provider="goat")

    assert product.release_date == release_date


def test_bad_prices_are_dropped_not_fatal() -> None:
    answer = _answer(
        _hit(lowest_price_cents="21500", instant_ship_lowest_price_cents=24000),
        _hit(product_template_id=2, lowest_price_cents=-1, retail_price_cents=True),
        _hit(product_template_id=3, lowest_price_cents=12000.0, has_stock="yes"),
    )

    products, _ = parse_query(answer, provider="goat")

    assert products[0].offers[0].price_minor == 24000
    assert products[1].offers[0].price_minor is None
    assert products[1].offers[0].compare_at_minor is None
    assert products[2].offers[0].price_minor == 12000
    assert products[2].offers[0].available is True  # has_stock not a bool: the price decides


def test_the_currency_is_configurable_and_checked() -> None:
    (product,), _ = parse_query(_answer(_hit(lowest_price_cents=100)), provider="g", currency="eur")

    assert product.offers[0].currency == "EUR"
    with pytest.raises(MoneyError):
        parse_query(_answer(_hit()), provider="g", currency="euro")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "payload: expected an object, got list"),
        ({"results": []}, "hits is missing"),
        ({"hits": {}}, "hits: expected a list, got dict"),
        (_answer(_hit(), "x"), r"hits\[1\]: expected an object, got str"),
        (_answer({"name": "no id"}), r"hits\[0\]: no product_template_id, objectID or id"),
        (_answer({"id": True, "name": "bool id"}), r"hits\[0\]: no product_template_id"),
        (_answer({"id": 5, "name": " "}), r"hits\[0\]: no name or slug"),
        (_answer(_hit(), nbPages="3"), "nbPages: expected a count, got '3'"),
        (_answer(_hit(), nbPages=-1), "nbPages"),
    ],
)
def test_malformed_answers_are_refused(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_query(payload, provider="goat")
