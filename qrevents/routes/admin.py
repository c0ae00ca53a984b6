"""Deployment bootstrap with the admin key: accounts, their users, their API keys."""

from flask import Blueprint

from .. import bodies
from ..auth import require_admin
from ..envelope import success
from ..resources import account_json, api_key_json, bank_link_json, user_json
from ..services import accounts, bank_links
from ..validation import MAX_ID, json_object

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def admin_only():
    require_admin()


@bp.post("/accounts")
def create_account():
    body = bodies.ACCOUNT.read(json_object())
    account = accounts.create_account(body["name"], body["currency"])
    return success("Cuenta creada", account_json(account), 201)


@bp.post(f"/accounts/<int(max={MAX_ID}):account_id>/users")
def create_user(account_id):
    body = bodies.USER.read(json_object())
    user = accounts.create_user(account_id, body["email"], body["password"], body["name"])
    return success("Usuario creado", user_json(user), 201)


@bp.post(f"/accounts/<int(max={MAX_ID}):account_id>/api-keys")
def create_api_key(account_id):
    body = bodies.ADMIN_API_KEY.read(json_object())
    key, plaintext = accounts.create_api_key(
        account_id, body["name"], user_id=body["userId"], expires_at=body["expiresAt"]
    )
    return success(
        "API key creada; guárdela, no se mostrará otra vez", api_key_json(key, plaintext), 201
    )


@bp.post(f"/accounts/<int(max={MAX_ID}):account_id>/bank")
def link_bank(account_id):
    """Link the account to its bank (or replace the link); the answer holds no secret."""
    link = bodies.bank_link(json_object())
    row, created = bank_links.link_account(account_id, link)
    if created:
        return success("Banco vinculado a la cuenta", bank_link_json(row), 201)
    return success("Vínculo con el banco actualizado", bank_link_json(row))
