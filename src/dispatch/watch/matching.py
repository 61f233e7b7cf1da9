"""Watch rules matched against catalogue listings: normalised text, compiled queries, an index.

Pure: no I/O. A phrase is a run of whole words in a listing's searchable text (title, brand,
codes, keywords) whose last word may be a prefix: "air max" matches "Air Max 90" and "air
maxes", "jordan" matches "Jordans", "ordan" matches nothing (a phrase starts at a word). A
phrase never spans two fields. Every required phrase (the rule's keywords plus the terms of
its ``q``) must occur and no excluded phrase may.

Price bounds are in the rule's currency, chosen when the rule is compiled (the rule's own,
else the user's, else USD): a listing priced in another currency, or not priced, does not
match a price-bounded rule, since there are no exchange rates here.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from dispatch.catalog.money import currency_code, exponent

DEFAULT_CURRENCY = "USD"

Phrase = tuple[str, ...]
Clause = tuple[str, str]

_NOT_ALNUM = re.compile(r"[\W_]+")
# A q part: an optionally negated "quoted phrase", or a bare word.
_Q_PART = re.compile(r'(-?)"([^"]*)"|(\S+)')


def normalise(text: str | None) -> str:
    """Lower-case, accents folded, every run of non-alphanumerics one space, stripped."""
    if not text:
        return ""
    folded = text.casefold()
    if not folded.isascii():
        decomposed = unicodedata.normalize("NFKD", folded)
        folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NOT_ALNUM.sub(" ", folded).strip()


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    """Normalised, empty ones dropped, duplicates dropped, first occurrence order kept."""
    return tuple(dict.fromkeys(n for n in map(normalise, values) if n))


def _phrases(values: Iterable[str]) -> tuple[Phrase, ...]:
    return tuple(tuple(value.split()) for value in _unique(values))


def parse_q(q: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Free text as (required, excluded) phrases: ``word -word "a phrase" -"a phrase"``."""
    required: list[str] = []
    excluded: list[str] = []
    for sign, quoted, word in _Q_PART.findall(q or ""):
        if word.startswith("-"):
            sign, word = "-", word[1:]
        (excluded if sign else required).append(quoted or word)
    return _unique(required), _unique(excluded)


@dataclass(frozen=True, slots=True, eq=False)
class SearchText:
    """The normalised words of some fields, indexed for phrase look-ups."""

    tokens: tuple[str, ...]  # "" separates two fields
    positions: Mapping[str, tuple[int, ...]]
    prefixes: frozenset[str]  # every prefix of every word

    @classmethod
    def of(cls, *fields: str | None) -> SearchText:
        """The words of ``fields`` in order; a phrase cannot run from one field into the next."""
        tokens: list[str] = []
        for value in fields:
            words = normalise(value).split()
            if words and tokens:
                tokens.append("")  # equals no phrase word and starts with none
            tokens.extend(words)
        positions: dict[str, list[int]] = {}
        for index, token in enumerate(tokens):
            if token:
                positions.setdefault(token, []).append(index)
        prefixes = frozenset(w[:n] for w in positions for n in range(1, len(w) + 1))
        return cls(tuple(tokens), {w: tuple(p) for w, p in positions.items()}, prefixes)

    def contains(self, phrase: Phrase) -> bool:
        """Whether the phrase's words occur consecutively, the last one possibly as a prefix."""
        if len(phrase) <= 1:
            return not phrase or phrase[0] in self.prefixes
        head, last, tokens = phrase[:-1], phrase[-1], self.tokens
        for start in self.positions.get(head[0], ()):
            end = start + len(head)
            if end < len(tokens) and tokens[start:end] == head and tokens[end].startswith(last):
                return True
        return False


# Seed 003's ranking of record conditions (Goldmine grading), worst first.
GRADES = ("poor", "fair", "g", "g+", "vg", "vg+", "nm", "m")
_GRADE_NAMES = {"good": "g", "good plus": "g+", "very good": "vg", "very good plus": "vg+",
                "near mint": "nm", "mint": "m"}  # fmt: skip


def grade(condition: str | None) -> int | None:
    """Where a condition stands on seed 003's scale (``"Very Good Plus (VG+)"`` -> vg+)."""
    if not condition:
        return None
    text = condition.strip().lower()
    if "(" in text and ")" in text:
        text = text[text.rfind("(") + 1 : text.rfind(")")]
    key = _GRADE_NAMES.get(normalise(text), text.strip())
    return GRADES.index(key) if key in GRADES else None


@dataclass(frozen=True, slots=True)
class Listing:
    """A catalogue product as rules see it; its normalised text is computed once, on creation."""

    product_id: int
    provider: str
    title: str
    brand: str | None = None
    codes: str = ""  # SKU and style codes, space separated
    keywords: str = ""  # tags and categories, space separated
    price_minor: int | None = None
    currency: str | None = None
    in_stock: bool = True
    status: str = "active"  # "active" or "ended"
    sizes: tuple[str, ...] = ()  # labels of the offers that are available
    condition: str | None = None
    url: str | None = None
    release_id: str | None = None  # a Discogs release the listing sells, when known
    master_id: str | None = None  # the release's master (all its pressings), when known
    text: SearchText = field(init=False, repr=False, compare=False)
    condition_text: SearchText = field(init=False, repr=False, compare=False)
    provider_key: str = field(init=False, repr=False, compare=False)
    brand_key: str = field(init=False, repr=False, compare=False)
    size_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    grade: int | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "grade", grade(self.condition))
        text = SearchText.of(self.title, self.brand, self.codes, self.keywords)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "condition_text", SearchText.of(self.condition))
        object.__setattr__(self, "provider_key", self.provider.strip().lower())
        object.__setattr__(self, "brand_key", normalise(self.brand))
        object.__setattr__(self, "size_keys", frozenset(_unique(self.sizes)))


@dataclass(frozen=True, slots=True)
class RuleQuery:
    """What a rule asks for; every non-empty clause must hold. Build it with ``compile_query``.

    Phrases are derived from the fields on creation, and ``q`` is parsed then too, so a query
    built directly still honours its free text.
    """

    sources: tuple[str, ...] = ()  # provider names; empty: any provider
    keywords: tuple[str, ...] = ()  # normalised phrases, all required
    q: str | None = None
    exclude: tuple[str, ...] = ()  # normalised phrases, any one rejects
    brands: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    min_price_minor: int | None = None
    max_price_minor: int | None = None
    currency: str | None = None  # of the price bounds; USD when bounded and unset
    conditions: tuple[str, ...] = ()
    release_ids: tuple[str, ...] = ()  # seed 003's watch releases: this release…
    master_ids: tuple[str, ...] = ()  # …or any release of this master
    min_grade: int | None = None  # at least this condition (an index into GRADES)
    required: tuple[Phrase, ...] = field(init=False, repr=False, compare=False)
    excluded: tuple[Phrase, ...] = field(init=False, repr=False, compare=False)
    condition_phrases: tuple[Phrase, ...] = field(init=False, repr=False, compare=False)
    source_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    brand_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    size_keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        terms, exclusions = parse_q(self.q)
        object.__setattr__(self, "required", _phrases([*self.keywords, *terms]))
        object.__setattr__(self, "excluded", _phrases([*self.exclude, *exclusions]))
        object.__setattr__(self, "condition_phrases", _phrases(self.conditions))
        sources = frozenset(s.strip().lower() for s in self.sources if s.strip())
        object.__setattr__(self, "source_keys", sources)
        object.__setattr__(self, "brand_keys", frozenset(_unique(self.brands)))
        object.__setattr__(self, "size_keys", _unique(self.sizes))

    @property
    def price_bounded(self) -> bool:
        """Whether the rule has a minimum or a maximum price."""
        return self.min_price_minor is not None or self.max_price_minor is not None


def compile_query(
    *,
    sources: Iterable[str] = (),
    keywords: Iterable[str] = (),
    q: str | None = None,
    exclude: Iterable[str] = (),
    brands: Iterable[str] = (),
    sizes: Iterable[str] = (),
    min_price_minor: int | None = None,
    max_price_minor: int | None = None,
    currency: str | None = None,
    conditions: Iterable[str] = (),
    default_currency: str = DEFAULT_CURRENCY,
    release_ids: Iterable[str] = (),
    master_ids: Iterable[str] = (),
    min_condition: str | None = None,
) -> RuleQuery:
    """A RuleQuery from raw rule values: normalised, deduplicated, ``q`` merged into the phrases.

    ``default_currency`` is the user's currency (USD when they have none); it prices the
    bounds of a rule that names no currency. Raises MoneyError on a malformed currency code.
    """
    terms, exclusions = parse_q(q)
    code = currency_code(currency)
    if code is None and (min_price_minor is not None or max_price_minor is not None):
        code = currency_code(default_currency) or DEFAULT_CURRENCY
    return RuleQuery(
        sources=tuple(dict.fromkeys(s.strip().lower() for s in sources if s.strip())),
        keywords=_unique([*keywords, *terms]),
        q=q.strip() if q and q.strip() else None,
        exclude=_unique([*exclude, *exclusions]),
        brands=_unique(brands),
        sizes=_unique(sizes),
        min_price_minor=min_price_minor,
        max_price_minor=max_price_minor,
        currency=code,
        conditions=_unique(conditions),
        release_ids=tuple(dict.fromkeys(str(r) for r in release_ids)),
        master_ids=tuple(dict.fromkeys(str(m) for m in master_ids)),
        min_grade=grade(min_condition),
    )


@dataclass(frozen=True, slots=True)
class Match:
    """Why a listing matched a rule: (clause, what it matched) pairs, in a stable order."""

    clauses: tuple[Clause, ...]

    def summary(self) -> str:
        """One line for people: ``keyword "air max"; brand nike; price <= 150.00 USD``."""
        if not self.clauses:
            return "the rule matches every listing"
        return "; ".join(
            f'{kind} "{value}"' if kind == "keyword" else f"{kind} {value}"
            for kind, value in self.clauses
        )

    def as_json(self) -> dict[str, object]:
        """The explanation as stored with an event and shown to its user."""
        clauses = [{"clause": kind, "value": value} for kind, value in self.clauses]
        return {"clauses": clauses, "summary": self.summary()}


def format_money(minor: int, currency: str) -> str:
    """``15000, "USD"`` -> ``"150.00 USD"``; ``15000, "JPY"`` -> ``"15000 JPY"``."""
    amount = Decimal(minor).scaleb(-exponent(currency))
    return f"{amount:f} {currency}"


def _price_fits(query: RuleQuery, listing: Listing) -> bool:
    if not query.price_bounded:
        return True
    price = listing.price_minor
    if price is None or (listing.currency or "").upper() != (query.currency or "USD").upper():
        return False
    low, high = query.min_price_minor, query.max_price_minor
    return (low is None or price >= low) and (high is None or price <= high)


def _price_clauses(query: RuleQuery) -> list[Clause]:
    """The price bounds as explained to people (formatted only once a listing matched)."""
    currency = (query.currency or DEFAULT_CURRENCY).upper()
    clauses: list[Clause] = []
    if query.min_price_minor is not None:
        clauses.append(("price", f">= {format_money(query.min_price_minor, currency)}"))
    if query.max_price_minor is not None:
        clauses.append(("price", f"<= {format_money(query.max_price_minor, currency)}"))
    return clauses


def _option_clauses(query: RuleQuery, listing: Listing) -> list[Clause] | None:
    """The sizes and conditions the listing has of those asked for; None when it lacks one."""
    clauses: list[Clause] = []
    if query.size_keys:
        sizes = [size for size in query.size_keys if size in listing.size_keys]
        if not sizes:
            return None
        clauses.extend(("size", size) for size in sizes)
    if query.condition_phrases:
        found = [p for p in query.condition_phrases if listing.condition_text.contains(p)]
        if not found:
            return None
        clauses.extend(("condition", " ".join(phrase)) for phrase in found)
    return clauses


def match(query: RuleQuery, listing: Listing) -> Match | None:
    """How the listing satisfies every clause of the query, or None when one fails."""
    # The cheapest checks first: most candidates from the index fail one of them.
    if query.source_keys and listing.provider_key not in query.source_keys:
        return None
    if query.brand_keys and listing.brand_key not in query.brand_keys:
        return None
    if query.release_ids and listing.release_id not in query.release_ids:
        return None
    if query.master_ids and listing.master_id not in query.master_ids:
        return None
    if query.min_grade is not None and (listing.grade is None or listing.grade < query.min_grade):
        return None
    if not _price_fits(query, listing):
        return None
    text = listing.text
    for phrase in query.required:
        if not text.contains(phrase):
            return None
    for phrase in query.excluded:
        if text.contains(phrase):
            return None
    options = _option_clauses(query, listing)
    if options is None:
        return None
    clauses = [("source", listing.provider_key)] if query.source_keys else []
    clauses.extend(("keyword", " ".join(phrase)) for phrase in query.required)
    if query.brand_keys:
        clauses.append(("brand", listing.brand_key))
    if query.release_ids:
        clauses.append(("release", str(listing.release_id)))
    if query.master_ids:
        clauses.append(("master", str(listing.master_id)))
    if query.min_grade is not None:
        clauses.append(("condition", f">= {GRADES[query.min_grade]}"))
    return Match((*clauses, *options, *_price_clauses(query)))


AnchorKind = Literal["release", "prefix", "word", "brand", "source", "everywhere"]


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where a rule is filed in a RuleIndex: a listing is a candidate when it has one of the keys.

    ``release``: the listing sells the release (``r:<id>``) or one of the master's
    (``m:<id>``); ``prefix``: a word of the listing starts with the key; ``word``: a word equals it;
    ``brand``: the listing's brand equals it; ``source``: its provider does; ``everywhere``:
    every listing is a candidate.
    """

    kind: AnchorKind
    keys: tuple[str, ...] = ()


def anchor_of(query: RuleQuery, rarity: Mapping[str, int] | None = None) -> Anchor:
    """The most selective thing every matching listing must have.

    A word of the required phrases (the last word of a phrase may be a prefix, the others are
    whole words): the one fewest rules need (``rarity``: how many rules need each word; a
    word common among rules is common among listings too), then the longest; without
    phrases the brands, then the sources.
    """
    if query.release_ids or query.master_ids:
        keys = [f"r:{r}" for r in query.release_ids] or [f"m:{m}" for m in query.master_ids]
        return Anchor("release", tuple(keys))
    counts = rarity or {}
    options = [
        (-counts.get(word, 0), len(word), index < len(phrase) - 1, word)
        for phrase in query.required
        for index, word in enumerate(phrase)
    ]
    if options:
        _, _, whole, word = max(options)
        return Anchor("word" if whole else "prefix", (word,))
    if query.brand_keys:
        return Anchor("brand", tuple(sorted(query.brand_keys)))
    if query.source_keys:
        return Anchor("source", tuple(sorted(query.source_keys)))
    return Anchor("everywhere")


class RuleIndex:
    """Rules filed by anchor, so a listing is tested only against the rules it could match.

    Within an anchor, rules are grouped by the set of words their phrases need: one subset
    test against the listing's word prefixes keeps or drops the whole group (many users
    watch the same words), before any rule is matched clause by clause.
    """

    def __init__(self) -> None:
        self._rules: dict[int, tuple[RuleQuery, Anchor, frozenset[str]]] = {}
        self._buckets: dict[AnchorKind, dict[str, dict[frozenset[str], set[int]]]] = {
            "release": {},
            "prefix": {},
            "word": {},
            "brand": {},
            "source": {},
            "everywhere": {},
        }
        self._sources: dict[int, frozenset[str]] = {}  # only rules limited to some providers
        self._rarity: Counter[str] = Counter()  # how many rules need each word

    def __len__(self) -> int:
        return len(self._rules)

    def add(self, rule_id: int, query: RuleQuery) -> None:
        """File the rule, replacing any rule with the same id."""
        self.remove(rule_id)
        words = frozenset(word for phrase in query.required for word in phrase)
        self._rarity.update(words)
        anchor = anchor_of(query, self._rarity)
        self._rules[rule_id] = (query, anchor, words)
        for key in anchor.keys or ("",):
            groups = self._buckets[anchor.kind].setdefault(key, {})
            groups.setdefault(words, set()).add(rule_id)
        if query.source_keys:
            self._sources[rule_id] = query.source_keys

    def remove(self, rule_id: int) -> None:
        """Forget the rule; nothing happens when it is not filed."""
        entry = self._rules.pop(rule_id, None)
        if entry is None:
            return
        _, anchor, words = entry
        self._sources.pop(rule_id, None)
        self._rarity.subtract(words)
        bucket = self._buckets[anchor.kind]
        for key in anchor.keys or ("",):
            groups = bucket[key]
            ids = groups[words]
            ids.discard(rule_id)
            if not ids:
                del groups[words]
            if not groups:
                del bucket[key]

    def candidates(self, listing: Listing) -> set[int]:
        """Ids of the rules whose words the listing has: a superset of those it matches."""
        prefixes = listing.text.prefixes
        found: set[int] = set()
        releases = (f"r:{listing.release_id}", f"m:{listing.master_id}")
        for bucket, keys in (
            (self._buckets["release"], releases),
            (self._buckets["prefix"], prefixes),
            (self._buckets["word"], listing.text.positions.keys()),
            (self._buckets["brand"], (listing.brand_key,)),
            (self._buckets["source"], (listing.provider_key,)),
            (self._buckets["everywhere"], ("",)),
        ):
            for key in keys:
                groups = bucket.get(key)
                if groups:
                    for words, ids in groups.items():
                        if words <= prefixes:
                            found |= ids
        provider, sources = listing.provider_key, self._sources
        return {rid for rid in found if rid not in sources or provider in sources[rid]}

    def matches(self, listing: Listing) -> list[tuple[int, Match]]:
        """The rules the listing matches, by rule id, each with its explanation."""
        found: list[tuple[int, Match]] = []
        for rule_id in self.candidates(listing):
            explained = match(self._rules[rule_id][0], listing)
            if explained is not None:
                found.append((rule_id, explained))
        found.sort(key=lambda pair: pair[0])
        return found
