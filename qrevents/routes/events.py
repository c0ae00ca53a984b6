"""The event stream, its stats, and stream tickets (also under ``/api``,
where existing clients look for them)."""

from flask import Blueprint, current_app, g, request

from ..auth import STREAM_COOKIE_NAME, authenticate, is_admin, issue_stream_cookie, issue_ticket
from ..clock import iso, utcnow
from ..envelope import success
from ..policy import host_token_writes, own_connection, unthrottled, when_database_away
from ..stream import refused_stream
from ..stream_open import StreamRefused, open_stream

bp = Blueprint("events", __name__)

# Where a stream cookie is sent (one cookie per path: a browser sends it nowhere else).
STREAM_PATHS = ("/events/stream", "/api/events/stream")

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
}
# What Flask's response makes of the mimetype ``text/event-stream``; the stream's own WSGI
# entry (``qrevents.stream_wsgi``) sends it as is.
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


@bp.get(STREAM_PATHS[0])
@bp.get(STREAM_PATHS[1])
@own_connection
@unthrottled  # an account's streams have their own cap
@when_database_away(lambda: refused_stream_response("overloaded", g.get("request_id")))
def stream():
    """An event stream: the handshake is ``open_stream``; a refused one is a 200 stream that
    says why and ends at once. (A GET of it is answered by ``qrevents.stream_wsgi`` without
    Flask's dispatch; this view serves the other methods Flask routes here, HEAD.)"""
    return stream_response(*stream_answer())


def stream_answer():
    """``(body, headers)`` of the stream request in context: an accepted stream's
    ``EventStream``, or the whole body of a refused one (bytes)."""
    settings = current_app.config["QREVENTS"]
    try:
        body = open_stream(
            lambda: authenticate(for_stream=True),
            request.headers.get("Last-Event-ID") or request.args.get("lastEventId"),
            request.environ,
            delivery=current_app.extensions["qrevents"],
            settings=settings,
            request_id=g.get("request_id"),
        )
    except StreamRefused as refusal:
        return refused_stream(refusal.reason, g.get("request_id")), SSE_HEADERS
    return body, {**SSE_HEADERS, **_cors_headers(settings)}


def stream_response(body, headers):
    """The Flask response of a stream's ``body`` (see ``stream_answer``)."""
    return current_app.response_class(
        body, content_type=SSE_CONTENT_TYPE, headers=headers, direct_passthrough=True
    )


def _cors_headers(settings):
    """Let pages of the configured origins (a host app's) open the stream from their own
    origin; credentials travel in the URL (``?token=``/``?ticket=``), never as cookies."""
    origin = request.headers.get("Origin")
    allowed = {o.strip() for o in settings.cors_origins.split(",") if o.strip()}
    if origin and origin in allowed:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def refused_stream_response(reason, request_id=None):
    """A stream that ends at once with ``stream_closed`` (see ``stream.refused_stream``)."""
    return stream_response(refused_stream(reason, request_id), SSE_HEADERS)


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
@host_token_writes  # a host application's page asks for its stream's ticket
def ticket():
    """A single-use ticket (one connection) and, for an EventSource that reconnects by
    itself, the account's stream cookie, scoped to the two stream paths."""
    settings = current_app.config["QREVENTS"]
    identity = authenticate()
    ticket_value, seconds = issue_ticket(identity)
    cookie, cookie_expires_at = issue_stream_cookie(identity, settings.stream_cookie_seconds)
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
            secure=settings.env == "production",
            httponly=True,
            samesite="Strict",
        )
    return response
