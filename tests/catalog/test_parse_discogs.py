"""Discogs search results, marketplace stats and inventory listings -> ProductRecords."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dispatch.catalog.providers.discogs.parse import (
    apply_stats,
    parse_inventory,
    parse_listing,
    parse_search,
)
from dispatch.catalog.records import MalformedPayload, OfferRecord, ProductRecord
from dispatch.demo.providers import load


def _search(*results: object, **envelope: Any) -> dict[str, Any]:
    return {"results": list(results), **envelope}


def _result(**fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"id": 7, "type": "release", "title": "Artist - Record"}
    result.update(fields)
    return result


def _release() -> ProductRecord:
    products, _ = parse_search(load("discogs/database_search_modern_dj_healer.json"), provider="d")
    return products[1]


def test_search_page_maps_masters_and_releases() -> None:
    payload = load("discogs/database_search_modern_dj_healer.json")

    products, pages = parse_search(payload, provider="discogs")

    assert pages == 1
    assert [p.external_id for p in products] == [
        "master:1521183",
        "release:11849140",
        "release:13416116",
    ]
    master = products[0]
    assert master.provider == "discogs"
    assert master.title == "DJ Healer - Nothing 2 Loose"
    assert master.url == "https://www.discogs.com/DJ-Healer-Nothing-2-Loose/master/1521183"
    assert master.brand == "DJ Healer"
    assert master.categories == ("Electronic", "Ambient", "Breakbeat", "House")
    assert master.tags == ("Vinyl", '12"', "33 \u2153 RPM", "Album")
    assert master.sku == "APW-2"
    assert master.gtin is None  # the barcodes listed are matrix etchings, not EAN/UPC
    assert master.release_date == "2018"
    assert master.images[0].startswith("https://i.discogs.com/qAqSEZsVcMvvyMJfKXbv7Kdm")
    assert master.images[1].startswith("https://i.discogs.com/l71C5a4ersYHoN48qLm8KIpX")
    assert master.attributes == {
        "type": "master",
        "country": "Germany",
        "label": ["All Possible Worlds"],
        "format": ["Vinyl", '12"', "33 \u2153 RPM", "Album"],
        "master_id": "1521183",
        "community": {"want": 2496, "have": 1850},
    }
    assert master.offers == ()
    assert master.raw is payload["results"][0]
    assert products[2].release_date == "2019"
    assert products[2].tags[-1] == "Repress"
    assert products[2].attributes["community"] == {"want": 657, "have": 482}


@pytest.mark.parametrize(
    ("barcodes", "gtin"),
    [
        (["Matrix A", "5 012345 678900", "0-12345-67890-5"], "5012345678900"),
        (["0-12345-67890-5"], "012345678905"),
        (["1234567", "123456789012345"], None),  # 7 and 15 digits
        ("5012345678900", None),  # not a list
        ([5012345678900], None),
    ],
)
def test_gtin_is_the_first_barcode_of_8_to_14_digits(barcodes: object, gtin: str | None) -> None:
    (product,), _ = parse_search(_search(_result(barcode=barcodes)), provider="d")

    assert product.gtin == gtin


def test_search_result_edge_cases() -> None:
    results = _search(
        _result(title="Untitled", catno="none", year="", uri="https://example.test/r/7"),
        _result(id="8", catno="", year=1999, genre=["Rock"], style=["Rock", "Punk"]),
        _result(id=9, cover_image="https://st.discogs.com/images/spacer.gif", thumb=""),
    )

    first, second, third = parse_search(results, provider="d", site_url="https://d.test")[0]

    assert first.brand is None  # no " - " separator
    assert first.sku is None
    assert first.release_date is None
    assert first.url == "https://example.test/r/7"
    assert second.external_id == "release:8"
    assert second.sku is None
    assert second.release_date == "1999"
    assert second.categories == ("Rock", "Punk")
    assert third.images == ()
    assert third.url is None
    assert "community" not in third.attributes


def test_search_without_pagination_has_zero_pages() -> None:
    assert parse_search(_search(_result()), provider="d")[1] == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "payload: expected an object, got list"),
        (load("discogs/release_1.json"), "results is missing"),  # a release, not a search
        ({"results": "none"}, "results: expected a list, got str"),
        (_search(_result(), 3), r"results\[1\]: expected an object, got int"),
        (_search(_result(id=None)), r"results\[0\]: id or type is missing"),
        (_search(_result(type="")), r"results\[0\]: id or type is missing"),
        (_search(_result(title=None)), r"results\[0\]\.title is missing"),
        (_search(_result(), pagination={"pages": "2"}), "pagination.pages: expected a count"),
        (_search(_result(), pagination=[]), "pagination: expected an object"),
    ],
)
def test_malformed_search_pages_are_refused(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_search(payload, provider="d")


def test_stats_add_the_marketplace_offer() -> None:
    release = _release()

    priced = apply_stats(release, load("discogs/marketplace_stats_1.json"))

    (offer,) = priced.offers
    assert offer.external_id == "release:11849140:marketplace"
    assert offer.label == "Marketplace lowest"
    assert offer.price_minor == 10000  # "value": 100 is 100.00 EUR
    assert offer.currency == "EUR"
    assert offer.stock == 10
    assert offer.available is True
    assert dataclasses.replace(priced, offers=()) == release
    assert release.offers == ()  # a copy; the record given is untouched


def test_stats_replace_the_previous_marketplace_offer_and_keep_others() -> None:
    other = OfferRecord(external_id="kept", price_minor=1, currency="USD")
    release = dataclasses.replace(_release(), offers=(other,))

    once = apply_stats(
        release, {"num_for_sale": 3, "lowest_price": {"value": 12.5, "currency": "usd"}}
    )
    twice = apply_stats(once, {"num_for_sale": 0, "lowest_price": None})

    assert [o.external_id for o in twice.offers] == ["kept", "release:11849140:marketplace"]
    assert once.offers[1].price_minor == 1250
    assert once.offers[1].currency == "USD"
    last = twice.offers[1]
    assert (last.price_minor, last.currency, last.stock, last.available) == (None, None, 0, False)


@pytest.mark.parametrize(
    "lowest_price",
    [
        {"value": "abc", "currency": "EUR"},
        {"value": 10, "currency": "EURO"},
        {"value": 10},
        {"value": True, "currency": "EUR"},
        "10 EUR",
    ],
)
def test_an_unreadable_lowest_price_leaves_the_offer_without_price(lowest_price: object) -> None:
    priced = apply_stats(_release(), {"num_for_sale": 2, "lowest_price": lowest_price})

    assert priced.offers[0].price_minor is None
    assert priced.offers[0].stock == 2


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "payload: expected an object"),
        ({"lowest_price": None}, "num_for_sale: expected a count, got None"),
        ({"num_for_sale": "10", "lowest_price": None}, "num_for_sale: expected a count, got '10'"),
        ({"num_for_sale": -1}, "num_for_sale"),
    ],
)
def test_malformed_stats_are_refused(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        apply_stats(_release(), payload)


def test_inventory_page_maps_the_listing() -> None:
    payload = load("discogs/user_inventory_listings.json")

    products, pages = parse_inventory(payload, provider="discogs")

    assert pages == 1
    (listing,) = products
    assert listing.external_id == "listing:150899904"
    assert listing.title == (
        "Danger Mouse & Daniele Luppi - Rome (LP, Ora + LP, Whi + Album, Ltd, Tip)"
    )
    assert listing.url == "https://www.discogs.com/sell/item/150899904"
    assert listing.brand == "Danger Mouse & Daniele Luppi"
    assert listing.sku == "509990292346, TMR092"
    assert listing.release_date == "2011"
    assert listing.images == ()  # a bare image path names no host
    assert listing.attributes == {
        "condition": "Near Mint (NM or M-)",
        "sleeve_condition": "Near Mint (NM or M-)",
        "seller": "example",
        "ships_from": "United States",
        "release_id": "2992668",
    }
    (offer,) = listing.offers
    assert offer.external_id == "150899904"
    assert (offer.price_minor, offer.currency, offer.available) == (14999, "USD", True)
    assert listing.raw is payload["listings"][0]


def test_listing_fallbacks() -> None:
    listing = {
        "id": 5,
        "status": "Sold",
        "uri": "https://www.discogs.com/sell/item/5",
        "price": {"value": "abc", "currency": "GBP"},
        "release": {"artist": "Artist", "title": "Album", "thumbnail": "https://i.discogs.com/t"},
    }

    product = parse_listing(listing, provider="d")

    assert product.title == "Artist - Album"
    assert product.url == "https://www.discogs.com/sell/item/5"
    assert product.images == ("https://i.discogs.com/t",)
    assert product.offers[0].available is False
    assert product.offers[0].price_minor is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("listing", "listing: expected an object, got str"),
        ({"release": {"description": "x"}}, "listing.id is missing"),
        ({"id": 5}, "listing 5: release has no description or title"),
        ({"id": 5, "release": {"artist": "only an artist"}}, "listing 5: release has no"),
    ],
)
def test_malformed_listings_are_refused(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_listing(payload, provider="d")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"pagination": {"pages": 1}}, "listings is missing"),
        ({"listings": [{"id": 1}]}, "listing 1: release has no"),
    ],
)
def test_malformed_inventories_are_refused(payload: object, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_inventory(payload, provider="d")
