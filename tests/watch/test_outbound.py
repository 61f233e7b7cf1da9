"""Seed 003's outbound eBay link: a logged click and a 307 with the affiliate parameters."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.db.engine import Database
from dispatch.models import CatalogProduct, OutboundClick
from dispatch.watch.outbound import affiliate_url
from tests.support import make_settings, running_app
from tests.watch.conftest import V1, new_user
from tests.watch.test_evaluate import write


def listing(provider: str, external_id: str) -> ProductRecord:
    return ProductRecord(
        provider=provider,
        external_id=external_id,
        title="Nike Dunk Low",
        url=f"https://www.ebay.com/itm/{external_id}?hash=item1",
        offers=(OfferRecord(external_id=external_id, price_minor=9_900, currency="USD"),),
    )


async def test_a_click_is_logged_and_redirected_with_the_campaign(
    db_settings: dict[str, Any],
) -> None:
    settings = make_settings(**db_settings, ebay_campaign_id="5338", ebay_custom_id="dispatch")
    database = Database(settings)
    try:
        await write(database, listing("ebay", "123456"))
        await write(database, listing("goat", "dunk-1"))
        async with running_app(settings) as http:
            alice = await new_user(http, "alice@example.com")
            async with database.session(write=False) as session:
                rows = await session.execute(select(CatalogProduct.provider, CatalogProduct.id))
                ids = {provider: product_id for provider, product_id in rows}
            response = await http.get(f"{V1}/outbound/ebay/{ids['ebay']}", headers=alice.headers)
            assert response.status_code == 307
            target = urlsplit(response.headers["location"])
            query = parse_qs(target.query)
            assert target.netloc == "www.ebay.com"
            assert query["hash"] == ["item1"]
            assert query["campid"] == ["5338"]
            assert query["customid"] == ["dispatch"]
            assert query["mkrid"] == ["711-53200-19255-0"]
            other = await http.get(f"{V1}/outbound/ebay/{ids['goat']}", headers=alice.headers)
            assert other.status_code == 404
            anonymous = await http.get(f"{V1}/outbound/ebay/{ids['ebay']}")
            assert anonymous.status_code == 401
        async with database.session(write=False) as session:
            (click,) = (await session.scalars(select(OutboundClick))).all()
        assert click.user_id == alice.id
        assert click.product_id == ids["ebay"]
        assert click.target_url == response.headers["location"]
    finally:
        await database.dispose()


def test_without_a_campaign_the_url_is_left_alone() -> None:
    settings = make_settings()
    url = "https://www.ebay.com/itm/1"
    assert affiliate_url(url, settings) == url
