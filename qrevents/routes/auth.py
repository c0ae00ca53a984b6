"""``POST /auth/login``: email and password for a one-hour JWT."""

from flask import Blueprint, current_app
from flask_jwt_extended import create_access_token

from ..envelope import success
from ..errors import Unauthorized
from ..services.accounts import login
from ..validation import Fields, json_object

bp = Blueprint("auth", __name__)


@bp.post("/auth/login")
def log_in():
    fields = Fields(json_object())
    email = fields.string("email", max_length=254)
    password = fields.string("password", max_length=256)
    fields.check()
    throttle = current_app.extensions["qrevents.throttle"]
    throttle.check_login(email)
    try:
        user = login(email, password)
    except Unauthorized:
        throttle.count_failed_login(email)
        raise
    expires_in = current_app.config["QREVENTS"]["JWT_EXPIRES_SECONDS"]
    token = create_access_token(identity=str(user.id), additional_claims={"acc": user.account_id})
    data = {
        "accessToken": token,
        "tokenType": "Bearer",
        "expiresIn": expires_in,
        "userId": user.id,
        "accountId": user.account_id,
    }
    return success("Sesión iniciada", data)
