"""Money is exact: integer centavos in storage, ``Decimal`` with two places at the edges."""

from decimal import Decimal

CURRENCIES = ("BOB", "USD")
CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("99999999.99")


def to_cents(amount):
    """Centavos of a ``Decimal`` that has at most two decimal places."""
    return int((amount * 100).to_integral_exact())


def from_cents(cents):
    """A two-place ``Decimal`` (JSON ``100.50``) for an amount in centavos."""
    return (Decimal(cents) / 100).quantize(CENT)
