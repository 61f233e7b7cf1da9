"""Money as integer minor units: parsing provider amounts, currency codes, and back."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dispatch.catalog.money import (
    MoneyError,
    currency_code,
    exponent,
    major_to_minor,
    to_major,
    to_minor,
)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("197.00", "USD", 19700),
        ("197", "USD", 19700),
        ("0.5", "EUR", 50),
        (189.99, "USD", 18999),
        (0.1, "USD", 10),
        (100, "EUR", 10000),
        (Decimal("12.34"), "USD", 1234),
        ("1,299", "JPY", 1299),
        (1299, "JPY", 1299),
        ("1.234", "KWD", 1234),
        ("2", "KWD", 2000),
        ("$1,234.50", "USD", 123450),
        ("£ 64.50", "GBP", 6450),
        ("-5.00", "USD", -500),
        (".5", "USD", 50),
        ("197.00", "usd", 19700),
    ],
)
def test_to_minor_reads_provider_amounts(
    amount: str | int | float | Decimal, currency: str, minor: int
) -> None:
    assert to_minor(amount, currency) == minor


def test_to_minor_rounds_half_to_even() -> None:
    assert to_minor("1299.5", "JPY") == 1300
    assert to_minor("1298.5", "JPY") == 1298
    assert to_minor("0.125", "USD") == 12
    assert to_minor("0.135", "USD") == 14


@pytest.mark.parametrize("amount", [None, "", "   "])
def test_to_minor_keeps_nothing_as_none(amount: str | None) -> None:
    assert to_minor(amount, "USD") is None


@pytest.mark.parametrize(
    "amount", ["abc", "free", "NaN", "Infinity", float("nan"), float("inf"), True, False]
)
def test_to_minor_rejects_what_is_not_a_price(amount: str | float | bool) -> None:
    with pytest.raises(MoneyError):
        to_minor(amount, "USD")


def test_to_minor_rejects_a_non_finite_decimal() -> None:
    with pytest.raises(MoneyError):
        to_minor(Decimal("NaN"), "USD")
    with pytest.raises(MoneyError):
        to_minor(Decimal("-Infinity"), "USD")


@pytest.mark.parametrize(
    ("currency", "places"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("jpy", 0), ("KWD", 3)]
)
def test_exponent(currency: str, places: int) -> None:
    assert exponent(currency) == places


@pytest.mark.parametrize(
    ("value", "code"), [("usd", "USD"), (" eur ", "EUR"), ("GBP", "GBP"), (None, None), ("", None)]
)
def test_currency_code_normalises(value: str | None, code: str | None) -> None:
    assert currency_code(value) == code


@pytest.mark.parametrize("value", ["US", "USDX", "U1D", "$", "US D", "€"])
def test_currency_code_rejects_what_is_not_three_letters(value: str) -> None:
    with pytest.raises(MoneyError, match="ISO 4217"):
        currency_code(value)


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [
        (19700, "USD", 197.0),
        (18999, "USD", 189.99),
        (1299, "JPY", 1299.0),
        (1234, "KWD", 1.234),
        (250, None, 2.5),
        (None, "USD", None),
    ],
)
def test_to_major(minor: int | None, currency: str | None, major: float | None) -> None:
    assert to_major(minor, currency) == major


def test_to_major_inverts_to_minor() -> None:
    for amount, currency in [("189.99", "USD"), ("1299", "JPY"), ("1.234", "KWD")]:
        assert to_major(to_minor(amount, currency), currency) == float(amount)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("19,99", "EUR", 1999),
        ("19,9", "EUR", 1990),
        ("1,299", "USD", 129900),
        ("1.234,50 €", "EUR", 123450),
        ("$1,234.50", "USD", 123450),
    ],
)
def test_decimal_commas_and_grouping_are_told_apart(amount: str, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor


def test_major_to_minor_follows_the_currency() -> None:
    assert major_to_minor(Decimal("120.5"), "USD") == 12050
    assert major_to_minor(Decimal("1500"), "JPY") == 1500
    assert major_to_minor(Decimal("1.234"), "KWD") == 1234
    with pytest.raises(MoneyError):
        major_to_minor(Decimal("1.001"), "USD")
