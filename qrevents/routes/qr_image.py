"""A QR of the caller's account drawn as an image, for the screen a payer scans."""

from flask import Blueprint, current_app

from ..auth import authenticate
from ..errors import ValidationFailed
from ..qr_code import svg
from ..services import qrs
from ..sse import SAFE_ID

bp = Blueprint("qr_image", __name__)

IMAGE_HEADERS = {
    # What a QR encodes never changes; the credential makes the answer this caller's alone.
    "Cache-Control": "private, max-age=86400",
    # An SVG opened on its own is a document: let it run nothing.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


@bp.get("/qr/<qr_id>/image.svg")
def qr_image(qr_id):
    identity = authenticate()
    if not SAFE_ID.match(qr_id):
        raise ValidationFailed(fields={"qrId": "no es un id de QR"})
    qr = qrs.get_qr(identity.account_id, qr_id)
    return current_app.response_class(svg(qr), mimetype="image/svg+xml", headers=IMAGE_HEADERS)
