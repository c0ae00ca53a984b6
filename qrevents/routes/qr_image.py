"""A QR of the caller's account as the bank drew it: the PNG a payer scans."""

from flask import Blueprint, current_app

from ..auth import authenticate
from ..errors import NotFound
from ..services import qrs

bp = Blueprint("qr_image", __name__)

IMAGE_HEADERS = {
    # The bank's picture of a QR never changes; the credential makes it this caller's alone.
    "Cache-Control": "private, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
}


@bp.get('/qr/<safe_id("qrId"):qr_id>/image.png')
def qr_image(qr_id):
    identity = authenticate()
    qr = qrs.get_qr(identity.account_id, qr_id)
    if not qr.image_png:
        raise NotFound("El banco no entregó una imagen para este QR")
    return current_app.response_class(
        bytes(qr.image_png), mimetype="image/png", headers=IMAGE_HEADERS
    )
