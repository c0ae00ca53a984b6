"""The event stream, its stats, and stream tickets (also under ``/api``,
where existing clients look for them)."""

import logging
import socket

import peewee
from flask import Blueprint, current_app, g, request
from playhouse.pool import MaxConnectionsExceeded

from models import database

from ..auth import STREAM_COOKIE_NAME, authenticate, is_admin, issue_stream_cookie, issue_ticket
from ..clock import iso, utcnow
from ..envelope import success
from ..services.eventlog import frames_between, resume_point
from ..stream import REPLAY_BATCH, EventStream, chunked_connection, refused_stream

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__)

# Routes that manage their own database connection, or need none (see qrevents/__init__.py).
OWN_CONNECTION = {
    "events.stream",
    "health.health",
    "dashboard.page",
    "static",
    "metrics.metrics",
    "openapi.openapi",
}

# Routes that work without the database (served even while it is away).
NO_DATABASE = {"dashboard.page", "static", "metrics.metrics", "openapi.openapi"}
STREAM_ENDPOINT = "events.stream"

# Where a stream cookie is sent (one cookie per path: a browser sends it nowhere else).
STREAM_PATHS = ("/events/stream", "/api/events/stream")

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
}


@bp.get(STREAM_PATHS[0])
@bp.get(STREAM_PATHS[1])
def stream():
    """Authenticate, find the resume point, subscribe and read the first replay batch, all
    under one database connection and before the first byte.

    Only a credential failure is an HTTP error (401). A passing condition (draining, no
    database connection in time, the account's stream limit, a first replay batch that
    cannot be read) is a 200 stream that says why and ends at once: a browser's EventSource
    reconnects after that, and gives up for good on an error status.
    """
    settings = current_app.config["QREVENTS"]
    delivery = current_app.extensions["qrevents"]
    request_id = g.get("request_id")
    if delivery.hub.closed:
        return refused_stream_response("server_shutdown", request_id)
    last_event_id = request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
    try:
        with database.connection_context():
            identity = authenticate(for_stream=True)
            resume = resume_point(
                identity.account_id, last_event_id, settings["EVENT_RETENTION_DAYS"]
            )
            slot = delivery.broker.take_stream_slot(
                identity.account_id, settings["MAX_STREAMS_PER_ACCOUNT"]
            )
            if slot is None:
                return refused_stream_response("too_many_streams", request_id)
            sub = delivery.hub.subscribe(identity.account_id, identity.api_key_id, slot)
            if delivery.hub.closed:  # shut down while this handshake waited on the database
                delivery.hub.unsubscribe(sub)
                return refused_stream_response("server_shutdown", request_id)
            try:
                replay_head = (
                    None
                    if resume.seq is None
                    else frames_between(
                        identity.account_id, resume.seq, sub.start_seq, REPLAY_BATCH
                    )
                )
            except (peewee.PeeweeException, MaxConnectionsExceeded) as exc:
                delivery.hub.unsubscribe(sub)
                log.warning("replay of account %s failed: %s", identity.account_id, exc)
                return refused_stream_response("replay_failed", request_id)
            except BaseException:
                delivery.hub.unsubscribe(sub)
                raise
    except (MaxConnectionsExceeded, peewee.OperationalError, peewee.InterfaceError) as exc:
        log.warning("no database connection for a stream in time: %s", exc)
        return refused_stream_response("overloaded", request_id)
    connection = chunked_connection(request.environ)
    if connection is not None and settings["STREAM_SEND_BUFFER"]:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings["STREAM_SEND_BUFFER"])
    body = EventStream(
        delivery.hub,
        sub,
        identity,
        resume_seq=resume.seq,
        replay_head=replay_head,
        resync=None if resume.resync is None else (last_event_id, resume.resync),
        retry_ms=settings["RETRY_MS"],
        heartbeat_seconds=settings["HEARTBEAT_SECONDS"],
        request_id=request_id,
        connection=connection,
    )
    return current_app.response_class(
        body,
        mimetype="text/event-stream",
        headers={**SSE_HEADERS, **_cors_headers(settings)},
        direct_passthrough=True,
    )


def _cors_headers(settings):
    """Let pages of the configured origins (a host app's) open the stream from their own
    origin; credentials travel in the URL (``?token=``/``?ticket=``), never as cookies."""
    origin = request.headers.get("Origin")
    allowed = {o.strip() for o in settings["CORS_ORIGINS"].split(",") if o.strip()}
    if origin and origin in allowed:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def refused_stream_response(reason, request_id=None):
    """A stream that ends at once with ``stream_closed`` (see ``stream.refused_stream``)."""
    return current_app.response_class(
        refused_stream(reason, request_id), mimetype="text/event-stream", headers=SSE_HEADERS
    )


@bp.get("/events/stats")
@bp.get("/api/events/stats")
def stats():
    """Open streams in all and per account; an account sees only its own entry, the admin
    sees all."""
    counts = current_app.extensions["qrevents"].broker.stream_counts()
    if is_admin():
        visible, your_account = counts, None
    else:
        identity = authenticate()
        your_account = identity.account_id
        visible = {your_account: counts[your_account]} if your_account in counts else {}
    data = {
        "totalConnections": sum(counts.values()),
        "accountsWithSubscriptions": len(counts),
        "subscriptionsByAccount": {str(account): n for account, n in sorted(visible.items())},
        "yourAccountId": your_account,
        "timestamp": iso(utcnow()),
    }
    return success("Estadísticas de eventos obtenidas", data)


@bp.post("/events/ticket")
@bp.post("/api/events/ticket")
def ticket():
    """A single-use ticket (one connection) and, for an EventSource that reconnects by
    itself, the account's stream cookie, scoped to the two stream paths."""
    settings = current_app.config["QREVENTS"]
    identity = authenticate()
    ticket_value, seconds = issue_ticket(identity)
    cookie, cookie_expires_at = issue_stream_cookie(identity, settings["STREAM_COOKIE_SECONDS"])
    cookie_seconds = max(0, int((cookie_expires_at - utcnow()).total_seconds()))
    data = {
        "ticket": ticket_value,
        "expiresIn": seconds,
        "accountId": identity.account_id,
        "cookieExpiresIn": cookie_seconds,
    }
    response = success("Ticket de stream emitido", data, 201)
    for path in STREAM_PATHS:
        response.set_cookie(
            f"{STREAM_COOKIE_NAME}{identity.account_id}",
            cookie,
            max_age=cookie_seconds,
            path=request.script_root + path,
            secure=settings["ENV"] == "production",
            httponly=True,
            samesite="Strict",
        )
    return response
