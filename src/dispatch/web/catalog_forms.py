"""The catalogue pages' pure parts: the search form, the provider edit form, the price chart.

No I/O here: the search form becomes the same ``Filters`` the JSON API builds, the edit
form the same ``ProviderUpdate`` body, and a product's price history the geometry of a
step chart that the template draws as inline SVG.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, get_args
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import FormData, QueryParams

from dispatch.catalog.money import MoneyError, currency_code, exponent, major_to_minor, to_major
from dispatch.catalog.search import Filters, Sort
from dispatch.models import CatalogPricePoint
from dispatch.web.gateway_forms import FormInvalid, FormSpec, Values, body, values_from

SORTS: tuple[Sort, ...] = get_args(Sort)
STATUSES = ("active", "ended", "all")
STOCK = {"": None, "yes": True, "no": False}
SEARCH_PATH = "/ui/catalog/products"
# The provider fields the edit form shows; credentials and options have inputs of their own.
PROVIDER = FormSpec(
    text=("base_url", "currency", "schedule"),
    numbers=("rate_per_minute",),
    nullable=("rate_per_minute",),
    flags=("enabled",),
)
_LIMITS = {"query": 200, "brand": 255, "currency": 3, "cursor": 500}


def money(minor: int | None, currency: str | None) -> str:
    """``12999, "USD"`` -> ``"129.99 USD"``; as many decimals as the currency has."""
    major = to_major(minor, currency)
    if major is None:
        return "—"
    places = exponent(currency) if currency else 2
    return f"{major:,.{places}f} {currency or ''}".rstrip()


def web_link(url: str | None) -> str | None:
    """``url`` when it is http(s); provider data may hold ``javascript:`` or worse."""
    if url and urlsplit(url.strip()).scheme.lower() in ("http", "https"):
        return url.strip()
    return None


# Search --------------------------------------------------------------------------------------


def _major(text: str, label: str, currency: str | None, problems: list[str]) -> int | None:
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        problems.append(f"{label}: {text!r} is not a number")
        return None
    if not value.is_finite() or value < 0:
        problems.append(f"{label}: must be a positive amount")
        return None
    try:
        return major_to_minor(value, currency)
    except MoneyError as exc:
        problems.append(f"{label}: {exc}")
        return None


@dataclass(frozen=True, slots=True)
class SearchForm:
    """The search form as submitted; the page shows it back as typed, valid or not."""

    query: str = ""
    providers: tuple[str, ...] = ()
    brand: str = ""
    min_price: str = ""
    max_price: str = ""
    currency: str = ""
    in_stock: str = ""
    status: str = "active"
    sort: str = ""
    cursor: str = ""

    @classmethod
    def of(cls, params: QueryParams) -> SearchForm:
        def text(name: str, default: str = "") -> str:
            return (params.get(name) or default).strip()

        names = (n.strip() for v in params.getlist("providers") for n in v.split(","))
        return cls(
            query=text("query") or text("q"),
            providers=tuple(dict.fromkeys(n for n in names if n)),
            brand=text("brand"),
            min_price=text("min_price"),
            max_price=text("max_price"),
            currency=text("currency"),
            in_stock=text("in_stock"),
            status=text("status", "active"),
            sort=text("sort"),
            cursor=text("cursor"),
        )

    def _problems(self, known: Collection[str]) -> list[str]:
        found = [
            f"{name.replace('_', ' ').capitalize()}: at most {limit} characters"
            for name, limit in _LIMITS.items()
            if len(getattr(self, name)) > limit
        ]
        unknown = [name for name in self.providers if name not in known]
        if unknown:
            found.append(f"Unknown provider: {', '.join(unknown)}")
        if self.sort and self.sort not in SORTS:
            found.append(f"Sort: one of {', '.join(SORTS)}")
        if self.status not in STATUSES:
            found.append(f"Status: one of {', '.join(STATUSES)}")
        if self.in_stock not in STOCK:
            found.append("In stock: yes, no or either")
        return found

    def filters(self, known: Collection[str]) -> Filters:
        """The API's filters for this form; FormInvalid names every field that is wrong."""
        problems = self._problems(known)
        code = None
        try:
            code = currency_code(self.currency)
        except MoneyError as exc:
            problems.append(f"Currency: {exc}")
        low = _major(self.min_price, "Min price", code, problems)
        high = _major(self.max_price, "Max price", code, problems)
        if problems:
            raise FormInvalid(problems)
        return Filters(
            text=self.query or None,
            providers=self.providers,
            brand=self.brand or None,
            min_price_minor=low,
            max_price_minor=high,
            currency=code,
            in_stock=STOCK[self.in_stock],
            status=None if self.status == "all" else self.status,
        )

    def chosen_sort(self) -> Sort | None:
        return next((s for s in SORTS if s == self.sort), None)

    def page_url(self, cursor: str) -> str:
        """This search again, from ``cursor`` on."""
        pairs = [(name, value) for name, value in self._pairs() if value]
        return f"{SEARCH_PATH}?{urlencode([*pairs, ('cursor', cursor)])}"

    def _pairs(self) -> list[tuple[str, str]]:
        fields = ("query", "brand", "min_price", "max_price", "currency", "in_stock", "status")
        pairs = [(name, getattr(self, name)) for name in fields]
        return [*pairs, ("sort", self.sort), *(("providers", p) for p in self.providers)]


# Provider edit -------------------------------------------------------------------------------


def credential_field(key: str) -> str:
    return f"credential_{key}"


def provider_body(
    submitted: Values,
    current: Mapping[str, Any],
    form: FormData,
    credential_keys: Sequence[str],
) -> dict[str, Any]:
    """A ``ProviderUpdate`` body of what the admin changed, so untouched fields keep
    following the environment; a blank credential keeps the stored secret."""
    was = body(values_from(current, PROVIDER), PROVIDER)
    now = body(submitted, PROVIDER)
    data = {name: value for name, value in now.items() if value != was[name]}
    secrets = {key: form.get(credential_field(key)) for key in credential_keys}
    typed = {key: v for key, v in secrets.items() if isinstance(v, str) and v.strip()}
    if typed:
        data["credentials"] = typed
    options = _options(form.get(OPTIONS_FIELD))
    if options is not None and options != current.get("options"):
        data["options"] = options
    return data


OPTIONS_FIELD = "options_json"


def _options(raw: object) -> dict[str, Any] | None:
    """The options textarea as a JSON object; None when it was not sent."""
    if not isinstance(raw, str):
        return None
    text = raw.strip() or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormInvalid([f"Options: not valid JSON ({exc.msg}, line {exc.lineno})"]) from exc
    if not isinstance(value, dict):
        raise FormInvalid(['Options: must be a JSON object, e.g. {"queries": ["jordan"]}'])
    return value


# Price chart ---------------------------------------------------------------------------------

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 84, 12, 12, 26
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
Observed = list[tuple[datetime, int]]


@dataclass(frozen=True, slots=True)
class Series:
    offer_id: str
    label: str
    points: str  # an SVG polyline's ``points``
    last_price: int


@dataclass(frozen=True, slots=True)
class Chart:
    """One currency's price history: a step line per offer, between the axis bounds."""

    width: ClassVar[int] = WIDTH
    height: ClassVar[int] = HEIGHT
    left: ClassVar[int] = LEFT
    right: ClassVar[int] = WIDTH - RIGHT
    top: ClassVar[int] = TOP
    bottom: ClassVar[int] = HEIGHT - BOTTOM

    currency: str
    low: int
    high: int
    start: datetime
    end: datetime
    series: list[Series]


@dataclass(frozen=True, slots=True)
class _Scale:
    start: datetime
    span: float  # seconds
    low: int
    high: int

    def x(self, at: datetime) -> float:
        return LEFT + (at - self.start).total_seconds() / self.span * PLOT_W

    def y(self, price: int) -> float:
        # A flat history sits in the middle rather than on an edge.
        share = (self.high - price) / (self.high - self.low) if self.high > self.low else 0.5
        return TOP + share * PLOT_H


def _line(observed: Observed, scale: _Scale) -> str:
    """A price holds until the next observation, so each change is a vertical step; the
    last price holds to the right edge."""
    first_at, price = observed[0]
    steps = [(scale.x(first_at), scale.y(price))]
    for at, following in observed[1:]:
        steps += [(scale.x(at), scale.y(price)), (scale.x(at), scale.y(following))]
        price = following
    steps.append((LEFT + PLOT_W, scale.y(price)))
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in steps)


def _chart(
    currency: str, by_offer: dict[str, Observed], labels: dict[str, str], end: datetime
) -> Chart:
    observed = [item for rows in by_offer.values() for item in rows]
    prices = [price for _, price in observed]
    start = min(at for at, _ in observed)
    end = max(end, *(at for at, _ in observed))
    scale = _Scale(start, (end - start).total_seconds() or 1.0, min(prices), max(prices))
    series = [
        Series(offer_id, labels[offer_id], _line(rows, scale), rows[-1][1])
        for offer_id, rows in by_offer.items()
    ]
    return Chart(currency, scale.low, scale.high, start, end, series)


def price_charts(points: Sequence[CatalogPricePoint], now: datetime) -> list[Chart]:
    """One chart per currency, each offer's line running on to ``now``; points oldest first."""
    grouped: dict[str, dict[str, Observed]] = {}
    labels: dict[str, str] = {}
    for point in points:
        if point.price_minor is None:
            continue  # no price to draw; the line holds the last one
        offers = grouped.setdefault(point.currency or "", {})
        offers.setdefault(point.offer_external_id, []).append(
            (point.observed_at, point.price_minor)
        )
        labels[point.offer_external_id] = point.label or point.offer_external_id
    return [_chart(code, grouped[code], labels, now) for code in sorted(grouped)]
