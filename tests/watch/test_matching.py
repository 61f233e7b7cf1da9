"""Rule matching is pure: every clause, the phrase semantics and the index against brute force."""

from __future__ import annotations

import random

import pytest

from dispatch.catalog.money import MoneyError
from dispatch.watch.matching import (
    Anchor,
    Listing,
    Match,
    RuleIndex,
    RuleQuery,
    SearchText,
    anchor_of,
    compile_query,
    format_money,
    match,
    normalise,
    parse_q,
)


def listing(title: str = "Air Jordan 1 Retro High OG", **fields: object) -> Listing:
    values: dict[str, object] = {"product_id": 1, "provider": "goat", "title": title}
    values.update(fields)
    return Listing(**values)  # type: ignore[arg-type]


def matches(query: RuleQuery, item: Listing) -> bool:
    return match(query, item) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Nike Air-Max 90 — Café", "nike air max 90 cafe"),
        ("  ÉLAN   Crème  ", "elan creme"),
        ("Ångström / Jäger's", "angstrom jager s"),
        ("Straße", "strasse"),
        ("ﬁne_print", "fine print"),
        ("x---y!!!z...", "x y z"),
        ("YEEZY Boost 350 V2", "yeezy boost 350 v2"),
        ("Ольга", "ольга"),
        ("---", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_normalise(text: str | None, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("q", "required", "excluded"),
    [
        ("air max", ("air", "max"), ()),
        ("Jordan -Kids", ("jordan",), ("kids",)),
        ('"air max" 90', ("air max", "90"), ()),
        ('dunk -"low pro" -gs', ("dunk",), ("low pro", "gs")),
        ("air-max -air-force", ("air max",), ("air force",)),
        ("Air air AIR -kids -KIDS", ("air",), ("kids",)),
        ('- "" -"" "unclosed', ("unclosed",), ()),
        ("", (), ()),
        (None, (), ()),
    ],
)
def test_parse_q(q: str | None, required: tuple[str, ...], excluded: tuple[str, ...]) -> None:
    assert parse_q(q) == (required, excluded)


def test_compile_normalises_deduplicates_and_merges_q() -> None:
    query = compile_query(
        sources=["GOAT", " goat ", "", "eBay"],
        keywords=["Air Max", "air-max", "  ", "Nike"],
        q='nike "Air Force" -kids',
        exclude=["GS", "gs"],
        brands=["Nike", "NIKE", ""],
        sizes=["US 10", "us-10", "10.5"],
        conditions=["New", "new", "Used"],
    )
    assert query.sources == ("goat", "ebay")
    assert query.keywords == ("air max", "nike", "air force")
    assert query.exclude == ("gs", "kids")
    assert query.brands == ("nike",)
    assert query.sizes == ("us 10", "10 5")
    assert query.conditions == ("new", "used")
    assert query.q == 'nike "Air Force" -kids'
    assert query.required == (("air", "max"), ("nike",), ("air", "force"))
    assert query.excluded == (("gs",), ("kids",))


@pytest.mark.parametrize(
    ("currency", "default", "bounded", "expected"),
    [
        ("eur", "GBP", True, "EUR"),  # the rule's own currency first
        (None, "GBP", True, "GBP"),  # then the user's
        (None, "USD", True, "USD"),  # USD is the default default
        (None, "GBP", False, None),  # no bounds: no currency needed
        ("jpy", "USD", False, "JPY"),
    ],
)
def test_compile_picks_the_currency_of_the_bounds(
    currency: str | None, default: str, bounded: bool, expected: str | None
) -> None:
    query = compile_query(
        currency=currency, default_currency=default, max_price_minor=100 if bounded else None
    )
    assert query.currency == expected


def test_compile_rejects_a_malformed_currency() -> None:
    with pytest.raises(MoneyError):
        compile_query(currency="dollars", max_price_minor=100)


def test_a_query_built_directly_still_honours_q() -> None:
    """The seed ignored ``q``; here it is parsed whichever way the query is built."""
    query = RuleQuery(q="jordan -kids")
    assert matches(query, listing("Air Jordan 1"))
    assert not matches(query, listing("Air Jordan 1 Kids"))
    assert not matches(query, listing("Nike Dunk Low"))


@pytest.mark.parametrize(
    ("title", "phrase", "expected"),
    [
        ("Air Jordan 1", "jordan", True),
        ("Air Jordans", "jordan", True),  # the last word may be a prefix
        ("Air Jordan", "ordan", False),  # a phrase starts at a word
        ("Nike Air Max 90", "air max", True),
        ("Nike Air Maxes", "air max", True),
        ("Nike Airs Max", "air max", False),  # only the last word is a prefix
        ("Nike Air Force Max", "air max", False),  # the words are consecutive
        ("Max Air", "air max", False),  # and in order
        ("Air Max", "air max 90", False),
        ("Air Max 90", "air max 9", True),
        ("Air Max 90", "air-max", True),
        ("Café Racer", "cafe racer", True),
        ("Air Max", "", True),  # an empty phrase asks nothing
    ],
)
def test_phrase_semantics(title: str, phrase: str, expected: bool) -> None:
    assert SearchText.of(title).contains(tuple(normalise(phrase).split())) is expected
    assert matches(compile_query(keywords=[phrase]), listing(title)) is expected


def test_phrases_do_not_span_two_fields() -> None:
    item = listing("Nike Air", brand="Max Racer")
    assert matches(compile_query(keywords=["nike air"]), item)
    assert matches(compile_query(keywords=["max racer"]), item)
    assert not matches(compile_query(keywords=["air max"]), item)


def test_brand_codes_and_keywords_are_searched() -> None:
    item = listing(
        "Retro High", brand="Jordan", codes="DD1391-100 DD1391100", keywords="sneakers basketball"
    )
    for keyword in ["jordan", "dd1391-100", "dd1391100", "DD1391 100", "basket", "sneakers"]:
        assert matches(compile_query(keywords=[keyword]), item), keyword
    assert not matches(compile_query(keywords=["dd1391-200"]), item)


def test_every_keyword_must_match() -> None:
    query = compile_query(keywords=["jordan", "retro"], q='"high og"')
    assert matches(query, listing("Air Jordan 1 Retro High OG"))
    assert not matches(query, listing("Air Jordan 1 High OG"))
    assert not matches(query, listing("Air Jordan 1 Retro High"))


@pytest.mark.parametrize(
    ("exclude", "rejected"),
    [
        ("kids", True),
        ("kid", True),  # exclusions use the same prefix semantics
        ("ids", False),
        ("grade school", True),
        ("school grade", False),
        ("toddler", False),
    ],
)
def test_exclusions(exclude: str, rejected: bool) -> None:
    item = listing("Air Jordan 1 Kids Grade School")
    assert matches(compile_query(keywords=["jordan"], exclude=[exclude]), item) is not rejected
    assert matches(compile_query(q=f'jordan -"{exclude}"'), item) is not rejected


@pytest.mark.parametrize(
    ("sources", "provider", "expected"),
    [
        ((), "goat", True),
        (("goat",), "goat", True),
        (("GOAT", "ebay"), "Goat", True),
        (("ebay",), "goat", False),
    ],
)
def test_sources(sources: tuple[str, ...], provider: str, expected: bool) -> None:
    assert matches(compile_query(sources=sources), listing(provider=provider)) is expected


@pytest.mark.parametrize(
    ("brands", "brand", "expected"),
    [
        (("Nike",), "NIKE", True),
        (("nike", "adidas"), "Adidas", True),
        (("Nike",), "Nike SB", False),  # the brand is compared whole
        (("Nike SB",), "nike-sb", True),
        (("Nike",), None, False),
        ((), None, True),
    ],
)
def test_brands(brands: tuple[str, ...], brand: str | None, expected: bool) -> None:
    assert matches(compile_query(brands=brands), listing(brand=brand)) is expected


@pytest.mark.parametrize(
    ("sizes", "available", "expected"),
    [
        (("10",), ("9", "10", "11"), True),
        (("10",), ("9", "10.5"), False),  # 10.5 is not 10
        (("US 10",), ("us-10",), True),
        (("10", "11"), ("11",), True),
        (("10",), (), False),  # sold out in every size
        ((), (), True),
    ],
)
def test_sizes_count_only_available_offers(
    sizes: tuple[str, ...], available: tuple[str, ...], expected: bool
) -> None:
    assert matches(compile_query(sizes=sizes), listing(sizes=available)) is expected


@pytest.mark.parametrize(
    ("conditions", "condition", "expected"),
    [
        (("new",), "Brand New", True),
        (("new",), "New with box", True),
        (("used",), "New", False),
        (("used", "pre owned"), "Pre-owned: good", True),
        (("new",), None, False),
        ((), None, True),
    ],
)
def test_conditions(conditions: tuple[str, ...], condition: str | None, expected: bool) -> None:
    assert matches(compile_query(conditions=conditions), listing(condition=condition)) is expected


@pytest.mark.parametrize(
    ("low", "high", "price", "currency", "expected"),
    [
        (None, 15000, 15000, "USD", True),  # bounds are inclusive
        (None, 15000, 15001, "USD", False),
        (5000, None, 5000, "USD", True),
        (5000, None, 4999, "USD", False),
        (5000, 15000, 9900, "usd", True),
        (None, 15000, None, "USD", False),  # no price: no match
        (None, 15000, 9900, None, False),  # unknown currency: no match
        (None, 15000, 9900, "EUR", False),  # no exchange rates (the seed let these through)
        (None, None, None, None, True),
    ],
)
def test_price_bounds(
    low: int | None, high: int | None, price: int | None, currency: str | None, expected: bool
) -> None:
    query = compile_query(min_price_minor=low, max_price_minor=high, currency="USD")
    item = listing(price_minor=price, currency=currency)
    assert matches(query, item) is expected


def test_bounds_without_a_currency_are_usd() -> None:
    query = RuleQuery(max_price_minor=15000)
    assert matches(query, listing(price_minor=100, currency="USD"))
    assert not matches(query, listing(price_minor=100, currency="EUR"))


def test_ended_and_sold_out_listings_still_match() -> None:
    item = listing(status="ended", in_stock=False)
    assert matches(compile_query(keywords=["jordan"]), item)


def test_the_match_explains_itself() -> None:
    query = compile_query(
        sources=["goat"],
        keywords=["air jordan"],
        q="retro -kids",
        brands=["Jordan"],
        sizes=["10", "11", "12"],
        conditions=["new"],
        min_price_minor=5000,
        max_price_minor=15000,
    )
    item = listing(
        brand="Jordan",
        sizes=("12", "10"),
        condition="Brand new",
        price_minor=12000,
        currency="USD",
    )
    explained = match(query, item)
    assert explained == Match(
        (
            ("source", "goat"),
            ("keyword", "air jordan"),
            ("keyword", "retro"),
            ("brand", "jordan"),
            ("size", "10"),
            ("size", "12"),
            ("condition", "new"),
            ("price", ">= 50.00 USD"),
            ("price", "<= 150.00 USD"),
        )
    )
    assert explained.as_json() == {
        "clauses": [{"clause": kind, "value": value} for kind, value in explained.clauses],
        "summary": 'source goat; keyword "air jordan"; keyword "retro"; brand jordan; size 10;'
        " size 12; condition new; price >= 50.00 USD; price <= 150.00 USD",
    }


def test_an_empty_query_matches_everything_and_says_so() -> None:
    explained = match(RuleQuery(), listing())
    assert explained is not None
    assert explained.summary() == "the rule matches every listing"


@pytest.mark.parametrize(
    ("minor", "currency", "expected"),
    [(15000, "USD", "150.00 USD"), (5, "EUR", "0.05 EUR"), (15000, "JPY", "15000 JPY")],
)
def test_format_money(minor: int, currency: str, expected: str) -> None:
    assert format_money(minor, currency) == expected


@pytest.mark.parametrize(
    ("query", "anchor"),
    [
        (compile_query(keywords=["jordan", "air"]), Anchor("prefix", ("jordan",))),
        (
            compile_query(keywords=["air max", "og"]),
            Anchor("word", ("air",)),
        ),  # whole words win ties
        (compile_query(keywords=["air maxes"]), Anchor("prefix", ("maxes",))),
        (compile_query(keywords=["jordan retro", "og"]), Anchor("word", ("jordan",))),
        (compile_query(keywords=["og"], brands=["Nike", "Adidas"]), Anchor("prefix", ("og",))),
        (
            compile_query(brands=["Nike", "Adidas"], sources=["goat"]),
            Anchor("brand", ("adidas", "nike")),
        ),
        (
            compile_query(sources=["goat", "ebay"], exclude=["kids"]),
            Anchor("source", ("ebay", "goat")),
        ),
        (compile_query(max_price_minor=100), Anchor("everywhere")),
    ],
)
def test_anchor_of(query: RuleQuery, anchor: Anchor) -> None:
    assert anchor_of(query) == anchor


def test_the_index_files_unanchored_rules_by_source() -> None:
    index = RuleIndex()
    index.add(1, compile_query(sources=["goat"]))
    index.add(2, compile_query(sources=["ebay", "goat"]))
    index.add(3, compile_query())
    index.add(4, compile_query(keywords=["jordan"], sources=["ebay"]))
    index.add(5, compile_query(brands=["Jordan"], sources=["ebay"]))
    assert index.candidates(listing(provider="goat", brand="Jordan")) == {1, 2, 3}
    assert index.candidates(listing(provider="ebay", brand="Jordan")) == {2, 3, 4, 5}
    assert index.candidates(listing(provider="discogs", brand="Jordan")) == {3}


def test_the_index_looks_up_prefix_and_word_anchors() -> None:
    index = RuleIndex()
    index.add(1, compile_query(keywords=["jord"]))
    index.add(2, compile_query(keywords=["jordan retro"]))
    index.add(3, compile_query(keywords=["jordans"]))
    index.add(4, compile_query(keywords=["ordan"]))
    assert index.candidates(listing("Air Jordan Retro")) == {1, 2}
    assert index.candidates(listing("Air Jordans Retro")) == {1, 3}
    assert [rule_id for rule_id, _ in index.matches(listing("Air Jordan Retro"))] == [1, 2]


def test_the_index_adds_replaces_and_removes() -> None:
    index = RuleIndex()
    item = listing("Nike Dunk Low Panda")
    index.add(7, compile_query(keywords=["dunk"]))
    index.add(3, compile_query(keywords=["panda"]))
    assert len(index) == 2
    assert [rule_id for rule_id, _ in index.matches(item)] == [3, 7]
    index.add(7, compile_query(keywords=["jordan"]))  # replaces, and leaves no trace under "dunk"
    assert len(index) == 2
    assert index.candidates(item) == {3}
    index.remove(3)
    index.remove(3)  # removing twice is harmless
    index.remove(99)
    assert len(index) == 1
    assert index.candidates(item) == set()
    index.remove(7)
    assert len(index) == 0
    assert index.candidates(listing("Air Jordan")) == set()


WORDS = [
    "air", "max", "jordan", "jordans", "retro", "high", "low", "og", "dunk", "panda", "yeezy",
    "boost", "350", "v2", "90", "1", "force", "sb", "pro", "kids", "vinyl", "lp", "blue", "note",
    "red", "reissue", "mint", "cafe", "racer", "gs",
]  # fmt: skip
BRANDS = ["Nike", "Jordan", "Adidas", "Blue Note", "New Balance"]
PROVIDERS = ["goat", "ebay", "shopify", "discogs"]
CONDITIONS = [None, "New", "Brand new with box", "Used - like new", "Pre-owned"]


def _phrase(rng: random.Random) -> str:
    """A word, a prefix of one, or two words (the second possibly cut short)."""
    word = rng.choice(WORDS)
    roll = rng.random()
    if roll < 0.3:
        return word[: rng.randint(1, len(word))]
    if roll < 0.6:
        last = rng.choice(WORDS)
        return f"{word} {last[: rng.randint(1, len(last))]}"
    return word


def _random_rule(rng: random.Random) -> RuleQuery:
    bounded = rng.random() < 0.3
    return compile_query(
        sources=rng.sample(PROVIDERS, rng.choice([0, 0, 1, 2])),
        keywords=[_phrase(rng) for _ in range(rng.choice([0, 1, 1, 2]))],
        q=rng.choice([None, None, rng.choice(WORDS), f"-{rng.choice(WORDS)}"]),
        exclude=[rng.choice(WORDS)] if rng.random() < 0.2 else [],
        brands=rng.sample(BRANDS, rng.choice([0, 0, 0, 1, 2])),
        sizes=rng.sample(["9", "10", "10.5", "11"], rng.choice([0, 0, 0, 1])),
        max_price_minor=rng.randint(5_000, 30_000) if bounded else None,
        currency=rng.choice(["USD", "EUR", None]) if bounded else None,
        conditions=rng.sample(["new", "used"], rng.choice([0, 0, 0, 1])),
    )


def _random_listing(rng: random.Random, product_id: int) -> Listing:
    return Listing(
        product_id=product_id,
        provider=rng.choice(PROVIDERS),
        title=" ".join(rng.choices(WORDS, k=rng.randint(2, 7))).title(),
        brand=rng.choice([None, *BRANDS]),
        codes=rng.choice(["", "DD1391-100 DD1391100", "BST-4003"]),
        keywords=" ".join(rng.choices(WORDS, k=rng.randint(0, 3))),
        price_minor=rng.choice([None, rng.randint(1_000, 40_000)]),
        currency=rng.choice(["USD", "USD", "EUR", None]),
        in_stock=rng.random() < 0.8,
        status=rng.choice(["active", "active", "ended"]),
        sizes=tuple(rng.sample(["9", "10", "10.5", "11"], rng.randint(0, 3))),
        condition=rng.choice(CONDITIONS),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_index_agrees_with_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    rules = {rule_id: _random_rule(rng) for rule_id in range(300)}
    items = [_random_listing(rng, n) for n in range(300)]
    index = RuleIndex()
    for rule_id, query in rules.items():
        index.add(rule_id, query)
    for rule_id in rng.sample(sorted(rules), 30):  # replaced and removed rules leave no trace
        rules[rule_id] = _random_rule(rng)
        index.add(rule_id, rules[rule_id])
    for rule_id in rng.sample(sorted(rules), 30):
        del rules[rule_id]
        index.remove(rule_id)
    assert len(index) == len(rules)
    pairs = candidates = 0
    for item in items:
        expected = [(rid, m) for rid, q in sorted(rules.items()) if (m := match(q, item))]
        found = index.candidates(item)
        assert {rule_id for rule_id, _ in expected} <= found
        assert index.matches(item) == expected
        pairs += len(expected)
        candidates += len(found)
    assert pairs > 300  # the generated data does match, so the comparison means something
    assert candidates < len(rules) * len(items) / 3  # and the index prunes most pairs
