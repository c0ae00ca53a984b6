"""The event stream, its stats, and stream tickets (also under ``/api``,
where existing clients look for them)."""

import socket

from flask import Blueprint, current_app, g, request

from models import database

from ..auth import authenticate, is_admin, issue_ticket
from ..clock import iso, utcnow
from ..envelope import success
from ..errors import TooManyStreams, Unavailable
from ..services.eventlog import frames_between, seq_of_event_id
from ..stream import REPLAY_BATCH, EventStream, chunked_connection

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

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
}


@bp.get("/events/stream")
@bp.get("/api/events/stream")
def stream():
    """Authenticate, find the resume point, subscribe and read the first replay batch, all
    under one database connection and before the first byte: a database that cannot answer
    is a 503 the client retries, not a stream cut after its connection event."""
    settings = current_app.config["QREVENTS"]
    delivery = current_app.extensions["qrevents"]
    if delivery.hub.closed:
        raise Unavailable("El servidor se está deteniendo", headers={"Retry-After": "1"})
    last_event_id = request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
    with database.connection_context():
        identity = authenticate(allow_ticket=True)
        resume_seq = seq_of_event_id(
            identity.account_id, last_event_id, settings["EVENT_RETENTION_DAYS"]
        )
        open_streams = delivery.broker.stream_counts().get(identity.account_id, 0)
        if open_streams >= settings["MAX_STREAMS_PER_ACCOUNT"]:
            raise TooManyStreams(headers={"Retry-After": "5"})
        sub = delivery.hub.subscribe(identity.account_id, identity.api_key_id)
        try:
            replay_head = (
                None
                if resume_seq is None
                else frames_between(identity.account_id, resume_seq, sub.start_seq, REPLAY_BATCH)
            )
        except BaseException:
            delivery.hub.unsubscribe(sub)
            raise
    connection = chunked_connection(request.environ)
    if connection is not None and settings["STREAM_SEND_BUFFER"]:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings["STREAM_SEND_BUFFER"])
    body = EventStream(
        delivery.hub,
        sub,
        identity,
        resume_seq=resume_seq,
        replay_head=replay_head,
        retry_ms=settings["RETRY_MS"],
        heartbeat_seconds=settings["HEARTBEAT_SECONDS"],
        request_id=g.get("request_id"),
        connection=connection,
    )
    return current_app.response_class(
        body, mimetype="text/event-stream", headers=SSE_HEADERS, direct_passthrough=True
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
    identity = authenticate()
    ticket_value, seconds = issue_ticket(identity)
    return success("Ticket de stream emitido", {"ticket": ticket_value, "expiresIn": seconds}, 201)
