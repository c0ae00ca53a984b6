"""The caller's webhook endpoints and their delivery log; a user's JWT manages them."""

from flask import Blueprint, current_app, request

from .. import bodies
from ..auth import authenticate, require_user_jwt
from ..envelope import success
from ..errors import ValidationFailed
from ..resources import page_json, webhook_delivery_json, webhook_json
from ..services import webhooks
from ..sse import DURABLE_TYPES
from ..validation import MAX_ID, Fields, json_object, page_args

bp = Blueprint("webhooks", __name__)

ENDPOINT = f"/webhooks/<int(max={MAX_ID}):endpoint_id>"


def _user_account():
    identity = authenticate()
    require_user_jwt(identity, managing="webhooks")
    return identity.account_id


def _url(fields, *, required):
    url = fields.string("url", max_length=2048, required=required)
    if url is not None:
        settings = current_app.config["QREVENTS"]
        try:
            webhooks.check_url(
                url,
                allow_private=settings.webhook_allow_private,
                production=settings.env == "production",
            )
        except ValidationFailed as refused:
            fields.fail("url", refused.fields["url"])
            return None
    return url


def _event_types(fields):
    """``events``: a non-empty list of durable event types, or absent/null for all."""
    value = fields.body.get("events")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or len(value) > len(DURABLE_TYPES)
        or not all(isinstance(item, str) and item in DURABLE_TYPES for item in value)
    ):
        fields.fail("events", f"debe ser una lista no vacía de: {', '.join(DURABLE_TYPES)}")
        return None
    return value


@bp.post("/webhooks")
def create_webhook():
    account_id = _user_account()
    fields = Fields(json_object())
    description = fields.string("description", max_length=200, required=False)
    event_types = _event_types(fields)
    fields.check()  # a body with bad fields never costs a DNS lookup
    url = _url(fields, required=True)
    fields.check()
    endpoint, secret = webhooks.create_endpoint(account_id, url, event_types, description)
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
    fields = Fields(json_object())
    known = {"url", "events", "description", "enabled"}
    unknown = sorted(set(fields.body) - known)
    for name in unknown:
        fields.fail(name, "no se puede cambiar")
    changes = {}
    if "events" in fields.body:
        changes["event_types"] = _event_types(fields)
    if "description" in fields.body:
        changes["description"] = fields.string("description", max_length=200, required=False)
    if "enabled" in fields.body:
        changes["enabled"] = fields.boolean("enabled", default=None)
        if changes["enabled"] is None:
            fields.fail("enabled", "debe ser true o false")
    fields.check()
    if "url" in fields.body:
        changes["url"] = _url(fields, required=True)
    fields.check()
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
