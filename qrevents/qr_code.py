"""A QR's payment code as a picture: the payload a payer's app reads, drawn with segno."""

import io

import segno

from .money import from_cents
from .sse import dumps


def payload(qr):
    """What the code holds: compact JSON naming the QR, its amount and currency."""
    return dumps({"qrId": qr.qr_id, "amount": from_cents(qr.amount_cents), "currency": qr.currency})


def svg(qr):
    """The QR's code as an SVG image."""
    return draw_svg(payload(qr))


def draw_svg(text):
    """``text`` as a standalone SVG QR code that scales to any box (a viewBox, no size)."""
    code = segno.make(text, error="m", micro=False)
    out = io.BytesIO()
    code.save(out, kind="svg", scale=4, border=4, light="#fff", omitsize=True, xmldecl=False)
    return out.getvalue()
