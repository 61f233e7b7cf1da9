"""Money as integer minor units of an ISO 4217 currency; parsed with ``Decimal``, never float."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from dispatch.errors import ValidationFailed

# ISO 4217 exponents that differ from 2; every other code has two decimals.
_EXPONENTS = {
    "BHD": 3, "BIF": 0, "CLF": 4, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3,
    "JPY": 0, "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3,
    "UGX": 0, "UYI": 0, "UYW": 4, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip
_CODE = re.compile(r"^[A-Z]{3}$")
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d{1,2}$")
_NUMBER = re.compile(r"-?[\d.,]*\d")


class MoneyError(ValueError):
    """A price that cannot be read, or a currency code that is not three letters."""


def currency_code(value: str | None) -> str | None:
    """The upper-cased ISO 4217 code, or None; raises MoneyError on anything else."""
    if value is None or not str(value).strip():
        return None
    code = str(value).strip().upper()
    if not _CODE.match(code):
        raise MoneyError(f"{value!r} is not an ISO 4217 currency code")
    return code


def exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (JPY 0, KWD 3, most 2)."""
    return _EXPONENTS.get(currency.upper(), 2)


def _plain_number(chunk: str) -> str:
    """Separators resolved: "1,234.50" and "1.234,50" -> "1234.50"; "19,99" -> "19.99"."""
    if "," in chunk and "." in chunk:
        if chunk.rfind(",") > chunk.rfind("."):
            return chunk.replace(".", "").replace(",", ".")
        return chunk.replace(",", "")
    if "," in chunk:
        # One comma before one or two digits is a decimal comma; otherwise it groups thousands.
        return chunk.replace(",", ".") if _DECIMAL_COMMA.match(chunk) else chunk.replace(",", "")
    return chunk


def to_minor(amount: str | int | float | Decimal | None, currency: str) -> int | None:
    """``"197.00"`` USD -> 19700; ``"1,299"`` JPY -> 1299; ``"19,99"`` EUR -> 1999; None and
    ``""`` stay None.

    Strings may carry a currency sign or thousands separators ("$1,234.50"); floats go
    through their shortest repr so 189.99 stays 18999.
    """
    if amount is None:
        return None
    if isinstance(amount, bool):
        raise MoneyError("a boolean is not a price")
    if isinstance(amount, float):
        amount = repr(amount)
    if isinstance(amount, str):
        found = _NUMBER.search(amount.replace(" ", "").replace("\u00a0", ""))
        if found is None:
            if amount.strip():
                raise MoneyError(f"{amount!r} is not a price")
            return None
        amount = _plain_number(found.group(0))
    try:
        value = Decimal(amount)
    except InvalidOperation as exc:
        raise MoneyError(f"{amount!r} is not a price") from exc
    if not value.is_finite():
        raise MoneyError(f"{amount!r} is not a price")
    scaled = (value * (Decimal(10) ** exponent(currency))).quantize(
        Decimal(1), rounding=ROUND_HALF_EVEN
    )
    return int(scaled)


def to_major(minor: int | None, currency: str | None) -> float | None:
    """Minor units back to a major-unit number, for seed 000's float ``price`` field."""
    if minor is None:
        return None
    places = exponent(currency) if currency else 2
    return float(Decimal(minor).scaleb(-places))


def major_to_minor(value: Decimal, currency: str | None) -> int:
    """A user's amount in major units (``"120.50"``) as minor units of ``currency`` (USD
    when none is given); MoneyError when it has more decimals than the currency has."""
    scaled = value.scaleb(exponent(currency or "USD"))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{value} has more decimals than {currency or 'USD'} allows")
    return int(scaled)


def requested_minor(value: Decimal | None, currency: str | None, name: str) -> int | None:
    """A price a caller asked for (major units) in minor units; a 422 naming ``name`` when it
    has more decimals than the currency (None stays None)."""
    if value is None:
        return None
    try:
        return major_to_minor(value, currency)
    except MoneyError as exc:
        raise ValidationFailed(f"{name}: {exc}") from exc
