"""Deployment bootstrap with the admin key: accounts, their users, their API keys."""

from flask import Blueprint

from ..auth import require_admin
from ..envelope import success
from ..resources import account_json, api_key_json, bank_link_json, user_json
from ..services import accounts, bank_links
from ..validation import MAX_ID, Fields, bank_link, json_object

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def admin_only():
    require_admin()


@bp.post("/accounts")
def create_account():
    fields = Fields(json_object())
    name = fields.string("name", max_length=120)
    currency = fields.currency("currency")
    fields.check()
    return success("Cuenta creada", account_json(accounts.create_account(name, currency)), 201)


@bp.post(f"/accounts/<int(max={MAX_ID}):account_id>/users")
def create_user(account_id):
    fields = Fields(json_object())
    email = fields.email("email")
    password = fields.string("password", max_length=256)
    name = fields.string("name", max_length=120)
    if password is not None and len(password) < 8:
        fields.fail("password", "debe tener al menos 8 caracteres")
    fields.check()
    user = accounts.create_user(account_id, email, password, name)
    return success("Usuario creado", user_json(user), 201)


@bp.post(f"/accounts/<int(max={MAX_ID}):account_id>/api-keys")
def create_api_key(account_id):
    fields = Fields(json_object())
    name = fields.string("name", max_length=120)
    user_id = fields.integer("userId", required=False)
    expires_at = fields.moment("expiresAt", required=False)
    fields.check()
    key, plaintext = accounts.create_api_key(
        account_id, name, user_id=user_id, expires_at=expires_at
    )
    return success(
        "API key creada; guárdela, no se mostrará otra vez", api_key_json(key, plaintext), 201
    )


@bp.post(f"/accounts/<int(max={MAX_ID}):account_id>/bank")
def link_bank(account_id):
    """Link the account to its bank (or replace the link); the answer holds no secret."""
    link = bank_link(json_object())
    row, created = bank_links.link_account(account_id, link)
    if created:
        return success("Banco vinculado a la cuenta", bank_link_json(row), 201)
    return success("Vínculo con el banco actualizado", bank_link_json(row))
