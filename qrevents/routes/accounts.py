"""The caller's account, its ledger, and its API keys."""

from flask import Blueprint

from .. import bodies
from ..auth import authenticate, require_user_jwt
from ..envelope import success
from ..resources import account_json, api_key_json, movement_json, page_json
from ..services import accounts
from ..services.ledger import list_movements
from ..validation import MAX_ID, json_object, page_args

bp = Blueprint("accounts", __name__)


@bp.get("/accounts/me")
def me():
    identity = authenticate()
    return success("Cuenta obtenida", account_json(accounts.get_account(identity.account_id)))


@bp.get("/accounts/me/movements")
def movements():
    identity = authenticate()
    limit, cursor = page_args()
    rows = list_movements(identity.account_id, limit=limit, cursor=cursor)
    return success("Movimientos obtenidos", page_json(rows, movement_json, limit, lambda m: m.seq))


@bp.post("/api-keys")
def create_api_key():
    identity = authenticate()
    require_user_jwt(identity)
    body = bodies.API_KEY.read(json_object())
    key, plaintext = accounts.create_api_key(
        identity.account_id, body["name"], user_id=identity.user_id, expires_at=body["expiresAt"]
    )
    return success(
        "API key creada; guárdela, no se mostrará otra vez", api_key_json(key, plaintext), 201
    )


@bp.get("/api-keys")
def list_api_keys():
    identity = authenticate()
    keys = accounts.list_api_keys(identity.account_id)
    return success(
        "API keys obtenidas", {"items": [api_key_json(k) for k in keys], "nextCursor": None}
    )


@bp.delete(f"/api-keys/<int(max={MAX_ID}):key_id>")
def revoke_api_key(key_id):
    identity = authenticate()
    require_user_jwt(identity)
    key = accounts.revoke_api_key(identity.account_id, key_id)
    return success("API key revocada", api_key_json(key))
