"""The caller's webhook endpoints and their delivery log; a user's JWT manages them."""

from flask import Blueprint, current_app, request

from .. import bodies
from ..auth import authenticate, require_user_jwt
from ..envelope import success
from ..resources import page_json, webhook_delivery_json, webhook_json
from ..services import webhooks
from ..validation import MAX_ID, json_object, page_args

bp = Blueprint("webhooks", __name__)

ENDPOINT = f"/webhooks/<int(max={MAX_ID}):endpoint_id>"


def _user_account():
    identity = authenticate()
    require_user_jwt(identity, managing="webhooks")
    return identity.account_id


def _check_url(url):
    """A 422 for a URL whose host is not one a webhook may reach (a DNS lookup: only for a
    body whose fields are otherwise good)."""
    settings = current_app.config["QREVENTS"]
    webhooks.check_url(
        url,
        allow_private=settings.webhook_allow_private,
        production=settings.env == "production",
    )


@bp.post("/webhooks")
def create_webhook():
    account_id = _user_account()
    body = bodies.WEBHOOK.read(json_object())
    _check_url(body["url"])
    endpoint, secret = webhooks.create_endpoint(
        account_id, body["url"], body["events"], body["description"]
    )
    return success(
        "Webhook registrado; guarde el secreto, no se mostrará otra vez",
        webhook_json(endpoint, secret),
        201,
    )


@bp.get("/webhooks")
def list_webhooks():
    account_id = _user_account()
    items = [webhook_json(endpoint) for endpoint in webhooks.list_endpoints(account_id)]
    return success("Webhooks obtenidos", {"items": items, "nextCursor": None})


# One rule for the three methods: an id out of range is then 404 for each of them (with a
# rule per method, Werkzeug answers 405 naming another method's rule).
@bp.route(ENDPOINT, methods=["GET", "PATCH", "DELETE"])
def webhook(endpoint_id):
    account_id = _user_account()
    if request.method == "PATCH":
        return _update_webhook(account_id, endpoint_id)
    if request.method == "DELETE":
        endpoint = webhooks.delete_endpoint(account_id, endpoint_id)
        return success("Webhook eliminado", webhook_json(endpoint))
    return success("Webhook obtenido", webhook_json(webhooks.get_endpoint(account_id, endpoint_id)))


def _update_webhook(account_id, endpoint_id):
    changes = bodies.WEBHOOK_CHANGE.read(json_object())
    if "url" in changes:
        _check_url(changes["url"])
    if "events" in changes:
        changes["event_types"] = changes.pop("events")
    endpoint = webhooks.update_endpoint(account_id, endpoint_id, changes)
    return success("Webhook actualizado", webhook_json(endpoint))


@bp.get(ENDPOINT + "/deliveries")
def list_deliveries(endpoint_id):
    account_id = _user_account()
    limit, cursor = page_args()
    rows = webhooks.list_deliveries(account_id, endpoint_id, limit=limit, cursor=cursor)
    return success(
        "Entregas obtenidas", page_json(rows, webhook_delivery_json, limit, lambda row: row.id)
    )


@bp.post(ENDPOINT + "/replay")
def replay(endpoint_id):
    account_id = _user_account()
    event_id = bodies.REPLAY.read(json_object())["fromEventId"]
    endpoint = webhooks.replay_from(account_id, endpoint_id, event_id)
    return success("Reenvío programado desde el evento indicado", webhook_json(endpoint))
