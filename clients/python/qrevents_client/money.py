"""JSON with exact amounts: numbers with a fraction are read as ``Decimal`` and ``Decimal`` is
written as a JSON number, so no amount ever passes through a float."""

import json
from decimal import Decimal, InvalidOperation


def loads(text):
    """Parse JSON; ``100.50`` becomes ``Decimal("100.50")``."""
    return json.loads(text, parse_float=Decimal)


def dumps(value, ascii_only=True):
    """JSON text of ``value``; ``Decimal`` as a plain number, float refused."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite amount: {value}")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("amounts are Decimal (or str or int), never float")
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{dumps(v, ascii_only)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def as_amount(value):
    """An amount argument as ``Decimal``: from Decimal, int or a decimal string; float refused
    (``0.1 + 0.2`` is not money)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError("amounts are Decimal (or str or int), never float")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, str)):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
    raise TypeError(f"not an amount: {value!r}")
