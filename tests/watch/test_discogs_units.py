"""The pure parts of the Discogs integration: OAuth 1.0a signing, sealed tokens, list pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pytest
from oauthlib.oauth1 import Client

from dispatch.catalog.records import MalformedPayload
from dispatch.security.sealing import Sealer, Unreadable, sealer_for
from dispatch.watch import oauth1
from dispatch.watch.discogs_account import ListedRelease, authorize_url, parse_list, release_url
from tests.support import make_settings
from tests.watch.discogs_fake import release

PHOTOS = "http://photos.example.net/photos?file=vacation.jpg&size=original"
PHOTOS_PARAMS = [
    ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
    ("oauth_token", "nnch734d00sl2jdk"),
    ("oauth_signature_method", "HMAC-SHA1"),
]


def test_the_oauth_1_0_specification_example_signs_as_published() -> None:
    """OAuth Core 1.0, appendix A.5: the photos example's signature."""
    params = [*PHOTOS_PARAMS, ("oauth_timestamp", "1191242096")]
    params += [("oauth_nonce", "kllo9940pd9333jh"), ("oauth_version", "1.0")]
    base = oauth1.base_string("GET", PHOTOS, params)
    assert base.startswith("GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg")
    assert (
        oauth1.sign(base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00") == "tR3+Ty81lMeYAr/Fid0kMTYa/WM="
    )


def test_rfc_5849s_example_signs_as_published() -> None:
    """RFC 5849, section 1.2: the same request without oauth_version."""
    params = [*PHOTOS_PARAMS, ("oauth_timestamp", "137131202"), ("oauth_nonce", "chapoH")]
    base = oauth1.base_string("GET", PHOTOS, params)
    assert (
        oauth1.sign(base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00") == "MdpQcU8iPSUjWoN/UDMsK2sui9I="
    )


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("https://api.discogs.com/users/some%20one/wants", {"page": 2, "per_page": 100}),
        ("https://API.discogs.com:443/oauth/identity", {}),
        ("http://127.0.0.1:8080/x?q=a+b%2Fc~d!&empty=", {"extra": "ü *'()"}),
    ],
)
def test_signatures_agree_with_oauthlib(url: str, params: dict[str, Any]) -> None:
    """An independent implementation computes the same signature for the same request,
    including encodings, default ports, upper-case hosts and blank values."""
    header = oauth1.authorization(
        "GET",
        url,
        consumer_key="ck~!*",
        consumer_secret="cs&x+y",
        token="tok en",
        token_secret="ts/=",
        params=params,
        nonce="n1",
        timestamp=1_700_000_000,
    )
    full = url + ("&" if "?" in url else "?") + urlencode(params, quote_via=quote)
    client = Client(
        "ck~!*",
        client_secret="cs&x+y",
        resource_owner_key="tok en",
        resource_owner_secret="ts/=",
        nonce="n1",
        timestamp="1700000000",
    )
    _, theirs, _ = client.sign(full if params else url, "GET")
    mine = oauth1.parse_authorization(header)
    assert (
        mine["oauth_signature"]
        == oauth1.parse_authorization(theirs["Authorization"])["oauth_signature"]
    )
    assert oauth1.verify(
        "GET",
        url,
        header,
        consumer_secret="cs&x+y",
        token_secret="ts/=",
        params=[(k, str(v)) for k, v in params.items()],
    )
    assert not oauth1.verify("GET", url, header, consumer_secret="cs&x+y", token_secret="wrong")


def test_the_header_carries_callback_and_verifier_and_parses_back() -> None:
    header = oauth1.authorization(
        "POST",
        "https://api.discogs.com/oauth/access_token",
        consumer_key="key",
        consumer_secret="secret",
        token="tmp",
        token_secret="tmp-secret",
        callback="https://dispatch.example/cb?x=1",
        verifier="v123",
    )
    parsed = oauth1.parse_authorization(header)
    assert parsed["oauth_callback"] == "https://dispatch.example/cb?x=1"
    assert parsed["oauth_verifier"] == "v123"
    assert parsed["oauth_token"] == "tmp"
    assert len(parsed["oauth_nonce"]) == 32
    assert oauth1.parse_authorization("Bearer abc") == {}
    assert oauth1.form("oauth_token=a&oauth_token_secret=b%2Fc") == {
        "oauth_token": "a",
        "oauth_token_secret": "b/c",
    }


def test_sealed_tokens_open_only_with_their_key_and_rotate() -> None:
    old = Sealer(["old key material"])
    sealed = old.seal("user-token")
    assert sealed.startswith("enc:v1:")
    assert "user-token" not in sealed
    assert old.open(sealed) == "user-token"
    rotated = Sealer(["new key material", "old key material"])
    assert rotated.open(sealed) == "user-token"  # the old key still opens it
    assert rotated.seal("x").split(":")[2] != sealed.split(":")[2]  # sealed with the new one
    with pytest.raises(Unreadable):
        Sealer(["new key material"]).open(sealed)
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(Unreadable):
        old.open(tampered)
    with pytest.raises(Unreadable):
        old.open("plain text")


def test_the_sealing_key_falls_back_to_secret_key_then_master_key() -> None:
    with_secret = sealer_for(make_settings(secret_key="s" * 40))
    with_master = sealer_for(make_settings(secret_key=None))
    assert with_secret is not None
    assert with_master is not None
    again = sealer_for(make_settings(secret_key=None))  # another process, same MASTER_KEY
    assert again is not None
    assert again.open(with_master.seal("t")) == "t"
    with pytest.raises(Unreadable):  # sealed with SECRET_KEY: MASTER_KEY alone cannot open it
        with_master.open(with_secret.seal("t"))
    assert with_secret.open(with_master.seal("t")) == "t"  # MASTER_KEY stays an opener
    assert sealer_for(make_settings(secret_key=None, master_key=None)) is None
    explicit = sealer_for(make_settings(token_encryption_keys="k1,k2", secret_key="s" * 40))
    assert explicit is not None
    assert explicit.open(with_secret.seal("t")) == "t"


def _page(key: str, items: list[Any], pages: int = 1) -> dict[str, Any]:
    return {"pagination": {"page": 1, "pages": pages}, key: items}


def test_a_wantlist_page_is_read_and_a_bad_item_is_reported_not_fatal() -> None:
    good = {"id": 5, "basic_information": release(5, "Selected Ambient Works", "Aphex Twin (2)")}
    masterless = {"basic_information": {**release(6, "Untitled", year=0), "master_id": 0}}
    broken = [
        {"id": 7},
        {"basic_information": {"id": "x", "title": "t"}},
        {"basic_information": {"id": 8, "title": " "}},
        "nonsense",
    ]
    page = parse_list(_page("wants", [good, *broken, masterless], pages=3), "wantlist")
    assert page.pages == 3
    assert page.items == [
        ListedRelease(5, None, "Selected Ambient Works", "Aphex Twin", 1990),
        ListedRelease(6, None, "Untitled", "Various", None),
    ]
    assert [error["index"] for error in page.errors] == [1, 2, 3, 4]
    assert all(error["source"] == "wantlist" for error in page.errors)


def test_a_collection_page_reads_releases_and_masters() -> None:
    item = {"id": 9, "instance_id": 1, "basic_information": release(9, "Blue", "Joni", 1971, 77)}
    page = parse_list(_page("releases", [item]), "collection")
    assert page.items == [ListedRelease(9, 77, "Blue", "Joni", 1971)]


@pytest.mark.parametrize(
    "payload",
    [[], {"wants": []}, {"pagination": {"pages": "2"}, "wants": []}, {"pagination": {}}],
)
def test_a_page_without_its_list_or_page_count_is_malformed(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        parse_list(payload, "wantlist")


def test_discogs_links() -> None:
    assert authorize_url("https://www.discogs.com/", "t k") == (
        "https://www.discogs.com/oauth/authorize?oauth_token=t+k"
    )
    assert release_url("https://www.discogs.com", 249504) == (
        "https://www.discogs.com/release/249504"
    )
