"""An account's webhook endpoints: register, list, change, delete, read attempts, replay.

Every change a user makes bumps ``updated_at``: the worker delivering to the endpoint then
lets it go at its next write and takes it up again as changed (qrevents/webhooks/deliverer.py).
"""

import json
from datetime import timedelta
from urllib.parse import urlsplit

from models import Account, Event, WebhookDelivery, WebhookEndpoint, database

from ..clock import utcnow
from ..errors import NotFound, ValidationFailed
from ..webhooks import payload
from ..webhooks.addresses import AddressRefused, check_url_host

MAX_ENDPOINTS_PER_ACCOUNT = 20


def check_url(url, *, allow_private, production):
    """Refuse (422 on ``url``) what a delivery could not or must not reach."""
    parts = urlsplit(url)
    problem = None
    try:
        port = parts.port
    except ValueError:
        port, problem = None, "tiene un puerto no válido"
    if problem:
        pass
    elif parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "debe ser una URL http:// o https:// con host"
    elif production and parts.scheme != "https":
        problem = "debe usar https://"
    elif parts.username is not None or parts.password is not None:
        problem = "no debe llevar usuario ni contraseña"
    elif parts.fragment:
        problem = "no debe llevar fragmento (#)"
    elif port == 0:
        problem = "tiene un puerto no válido"
    else:
        try:
            check_url_host(url, allow_private=allow_private)
        except AddressRefused as refused:
            problem = str(refused)
    if problem:
        raise ValidationFailed(fields={"url": problem})


def create_endpoint(account_id, url, event_types, description):
    """``(endpoint, secret)``: the secret exists in clear only in this return value's use."""
    count = WebhookEndpoint.select().where(WebhookEndpoint.account == account_id).count()
    if count >= MAX_ENDPOINTS_PER_ACCOUNT:
        raise ValidationFailed(
            f"Una cuenta tiene como máximo {MAX_ENDPOINTS_PER_ACCOUNT} webhooks",
            code="too_many_webhooks",
        )
    secret = payload.new_secret()
    now = utcnow()
    with database.atomic():
        # New endpoints receive events committed from now on (replay reaches back).
        (seq,) = Account.select(Account.event_seq).where(Account.id == account_id).tuples().get()
        endpoint = WebhookEndpoint.create(
            account=account_id,
            url=url,
            description=description,
            events=_types_json(event_types),
            secret=payload.store_secret(secret),
            cursor_seq=seq,
            created_at=now,
            updated_at=now,
        )
    return endpoint, secret


def list_endpoints(account_id):
    return list(
        WebhookEndpoint.select()
        .where(WebhookEndpoint.account == account_id)
        .order_by(WebhookEndpoint.id.desc())
    )


def get_endpoint(account_id, endpoint_id):
    endpoint = WebhookEndpoint.get_or_none(
        (WebhookEndpoint.id == endpoint_id) & (WebhookEndpoint.account == account_id)
    )
    if endpoint is None:
        raise NotFound("El webhook no existe")
    return endpoint


def update_endpoint(account_id, endpoint_id, changes):
    """Apply ``changes`` (url, event_types, description, enabled). Enabling again clears
    the failure state, so the next attempt is made at once."""
    endpoint = get_endpoint(account_id, endpoint_id)
    if "url" in changes:
        endpoint.url = changes["url"]
    if "event_types" in changes:
        endpoint.events = _types_json(changes["event_types"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if changes.get("enabled") is True and not endpoint.enabled:
        endpoint.enabled = True
        endpoint.disabled_reason = endpoint.disabled_at = None
        _clear_failures(endpoint)
    elif changes.get("enabled") is False and endpoint.enabled:
        endpoint.enabled = False
        endpoint.disabled_reason, endpoint.disabled_at = "disabled_by_user", utcnow()
    endpoint.updated_at = _later_than(endpoint.updated_at)
    endpoint.save()
    return endpoint


def delete_endpoint(account_id, endpoint_id):
    endpoint = get_endpoint(account_id, endpoint_id)
    endpoint.delete_instance()
    return endpoint


def list_deliveries(account_id, endpoint_id, *, limit, cursor):
    """The endpoint's attempts, newest first."""
    get_endpoint(account_id, endpoint_id)
    query = WebhookDelivery.select().where(WebhookDelivery.endpoint == endpoint_id)
    if cursor is not None:
        query = query.where(WebhookDelivery.id < cursor)
    return list(query.order_by(WebhookDelivery.id.desc()).limit(limit))


def replay_from(account_id, endpoint_id, event_id):
    """Move the endpoint's cursor to just before ``event_id``: it and every later event are
    delivered again, in order. 404 for an event the account's log does not hold."""
    endpoint = get_endpoint(account_id, endpoint_id)
    row = Event.get_or_none((Event.account == account_id) & (Event.event_id == event_id))
    if row is None:
        raise NotFound("El evento no existe en el registro de esta cuenta", code="unknown_event")
    endpoint.cursor_seq = row.seq - 1
    _clear_failures(endpoint)
    endpoint.updated_at = _later_than(endpoint.updated_at)
    endpoint.save()
    return endpoint


def _clear_failures(endpoint):
    endpoint.attempts = 0
    endpoint.failing_since = endpoint.next_attempt_at = endpoint.last_error = None


def _types_json(event_types):
    return None if event_types is None else json.dumps(sorted(set(event_types)))


def event_types_of(endpoint):
    """The types an endpoint receives; None means every durable type."""
    return None if endpoint.events is None else json.loads(endpoint.events)


def _later_than(moment):
    """Now, or a microsecond after ``moment`` if the clock has not moved past it: a change
    must always be seen as a change by the deliverer's conditional write."""
    now = utcnow()
    return now if now > moment else moment + timedelta(microseconds=1)
