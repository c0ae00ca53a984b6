"""Opening a stream, in one function: the handshake between a stream request and its body.

Authenticate, find the resume point, check the account's stream limit, subscribe and read
the first replay batch, all under one database connection and before the first byte. Only a
credential failure is an HTTP error (401, raised by ``identify``). A passing condition
(draining, no database connection in time, the account's stream limit, a first replay batch
that cannot be read) is ``StreamRefused``: the route answers a 200 stream that says why and
ends at once, after which a browser's EventSource reconnects (it gives up for good on an
error status).
"""

import logging
import socket

import peewee
from playhouse.pool import MaxConnectionsExceeded

from models import database

from .services.eventlog import resume_point
from .stream import EventStream, chunked_connection, replay_batch

log = logging.getLogger(__name__)


class StreamRefused(Exception):
    """The stream is refused for a passing ``reason`` (a key of ``stream.RETRY_RANGE_MS``)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def open_stream(identify, last_event_id, environ, *, delivery, settings, request_id):
    """The body of an accepted stream (an ``EventStream``), or ``StreamRefused``.

    ``identify()`` authenticates the request in the handshake's connection; ``environ`` is
    the request's WSGI environ (the socket the hub may write to).
    """
    hub = delivery.hub
    if hub.closed:
        raise StreamRefused("server_shutdown")
    try:
        with database.connection_context():
            identity = identify()
            resume = resume_point(identity.account_id, last_event_id, settings.event_retention_days)
            slot = _stream_slot(delivery.broker, identity.account_id, settings)
            sub = hub.subscribe(identity.account_id, identity.api_key_id, resume.seq, slot)
            try:
                if hub.closed:  # shut down while this handshake waited on the database
                    raise StreamRefused("server_shutdown")
                replay_head = _first_replay_batch(identity.account_id, resume.seq, sub)
            except BaseException:
                hub.unsubscribe(sub)
                raise
    except (MaxConnectionsExceeded, peewee.OperationalError, peewee.InterfaceError) as exc:
        log.warning("no database connection for a stream in time: %s", exc)
        raise StreamRefused("overloaded") from None
    connection = chunked_connection(environ)
    if connection is not None and settings.stream_send_buffer:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.stream_send_buffer)
    return EventStream(
        hub,
        sub,
        identity,
        resume_seq=resume.seq,
        replay_head=replay_head,
        resync=None if resume.resync is None else (last_event_id, resume.resync),
        retry_ms=settings.retry_ms,
        heartbeat_seconds=settings.heartbeat_seconds,
        request_id=request_id,
        connection=connection,
    )


def _stream_slot(broker, account_id, settings):
    """The stream's place under the account's limit, held over every worker by the broker
    until the subscription ends; a stream past the limit is refused."""
    slot = broker.take_stream_slot(account_id, settings.max_streams_per_account)
    if slot is None:
        raise StreamRefused("too_many_streams")
    return slot


def _first_replay_batch(account_id, resume_seq, sub):
    """The first batch of missed events, read in the handshake's connection (None: the
    stream is live only); a batch that cannot be read refuses the stream."""
    if resume_seq is None:
        return None
    try:
        return replay_batch(account_id, resume_seq, sub.start_seq)
    except (peewee.PeeweeException, MaxConnectionsExceeded) as exc:
        log.warning("replay of account %s failed: %s", account_id, exc)
        raise StreamRefused("replay_failed") from None
