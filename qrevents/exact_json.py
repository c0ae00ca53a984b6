"""JSON as qrevents writes it everywhere: compact, UTF-8, amounts exact."""

import simplejson


def dumps(data):
    """Compact JSON with exact two-place amounts (``Decimal`` written as a number)."""
    return simplejson.dumps(data, use_decimal=True, separators=(",", ":"), ensure_ascii=False)
