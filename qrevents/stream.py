"""The body of one SSE response: preamble, replay from the log, then live frames; and the
writer that takes each committed event to its client's socket (``Subscription``).

It holds plain values only (no request context, no database connection while it waits). The
first replay batch comes read with the handshake; each later one opens and closes its own short
connection. ``close`` always releases the subscription, even when the client left before the
first byte.

Under gunicorn's gevent worker the live phase is mostly not in this generator: once the
preamble and replay are written, the subscription is attached to the connection's socket and
the hub's delivery writes each event's chunk there itself (``Subscription.push``): every
write of a stream, whoever's greenlet makes it, is in this module. The stream's greenlet
stays parked and wakes only for heartbeats, a slow reader's backlog, expiry, closing and its
client's hang-up (a read watcher on the socket rings the same wake-up). Its own writes are
bounded in time: a reader that stops reading is cut off, not waited for.
"""

import logging
import socket
import struct
import time

import gevent.socket
import peewee
from gevent.event import Event as Signal
from playhouse.pool import MaxConnectionsExceeded

from models import database

from . import events, logs, metrics, sse
from .clock import utcnow
from .services.eventlog import events_between

REPLAY_BATCH = 500
DISCARD_LIMIT = 4096  # bytes a client may send on its stream before it counts as gone
# The reconnection delay (ms, drawn in this range) of a stream ended or refused for a passing
# reason: short when a restarted or another worker can take the client soon, long for the
# per-account limit. Jitter keeps the clients sent away together from returning together.
RETRY_RANGE_MS = {
    "server_shutdown": (1000, 3000),
    "overloaded": (1000, 3000),
    "replay_failed": (1000, 3000),
    "too_many_streams": (15000, 30000),
}

log = logging.getLogger(__name__)


def chunked_connection(environ):
    """The client's socket when the hub may write HTTP chunks to it itself, else None.

    That is gunicorn's gevent worker answering a plain-TCP HTTP/1.1 GET: gunicorn frames our
    body in chunks there, so chunks written beside it are the same framing (never TLS, HTTP/2,
    HEAD or HTTP/1.0, whose framing differs).
    """
    connection = environ.get("gunicorn.socket")
    if (
        type(connection) is gevent.socket.socket
        and environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
        and environ.get("REQUEST_METHOD") == "GET"
    ):
        return connection
    return None


def refused_stream(reason, request_id=None):
    """The whole body of a stream refused for a passing reason (a key of RETRY_RANGE_MS).

    A browser's EventSource gives up for good on any answer but a 200 event stream, and
    reconnects after the normal end of one: so the refusal is such a stream, ended at once.
    """
    metrics.STREAMS_CLOSED.labels(reason).inc()
    logs.log_event("stream_refused", requestId=request_id, reason=reason)
    return sse.jittered_retry_frame(*RETRY_RANGE_MS[reason]) + _closed_frame(reason)


class Subscription:
    """One open stream as the hub sees it: the writer of its events, and why it must close,
    if it must.

    While a socket is attached, an event goes straight to the kernel with one non-blocking
    ``send`` (its HTTP chunk, encoded once per event: ``chunk_of``). Whatever the kernel does
    not take at once (a slow reader) is kept in ``unsent`` and, with every event behind it,
    left to the stream's greenlet, which writes cooperatively and re-attaches when it has
    caught up.
    """

    __slots__ = (
        "account_id",
        "api_key_id",
        "start_seq",
        "frames",
        "limit",
        "wakeup",
        "closing",
        "since",
        "socket",
        "unsent",
        "slot",
    )

    def __init__(self, account_id, api_key_id, limit, slot=None):
        self.account_id = account_id
        self.api_key_id = api_key_id
        self.start_seq = None  # live events start after this sequence number
        self.frames = []  # events waiting for the stream's greenlet
        self.limit = limit
        self.wakeup = Signal()
        self.closing = None
        self.since = None  # when the oldest pending event arrived (monotonic)
        self.socket = None  # a raw non-blocking socket that push writes chunks to
        self.unsent = b""  # the tail of a chunk the kernel did not take
        self.slot = slot  # its place under the account's stream limit, freed at unsubscribe

    def push(self, event):
        """Send or queue a committed event (``EventRecord``), never blocking the sender;
        overflow ends this stream.

        True when the event went to the socket (whole, or its head with the tail queued)."""
        if self.closing:
            return False
        if self.socket is not None and not self.frames and not self.unsent:
            # The chunk is made by the first stream that writes the event; the rest share it.
            self._send(event.chunk or chunk_of(event))
            return True
        if len(self.frames) >= self.limit:
            # The client resumes from its Last-Event-ID; the log has what is dropped here.
            self.frames = []
            self.close("slow_consumer")
            return False
        if not self.frames:
            self.since = time.monotonic()
        self.frames.append(event)
        self.wakeup.set()
        return False

    def _send(self, chunk):
        try:
            sent = self.socket.send(chunk)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.socket = None
            self.close("client_disconnected")
            return
        if sent < len(chunk):
            self.unsent = chunk[sent:]
            self.wakeup.set()

    def attach(self, raw_socket):
        """Let the hub write to the connection from now on, unless events are waiting."""
        if not self.frames and not self.unsent and not self.closing:
            self.socket = raw_socket

    def detach(self):
        """Stop the hub's writes (the stream's greenlet is about to write): what it left."""
        self.socket = None
        unsent, self.unsent = self.unsent, b""
        return unsent

    def take(self):
        """The frames of every pending event, oldest first; re-arms the wake-up."""
        pending, self.frames = self.frames, []
        self.wakeup.clear()
        return [event.frame for event in pending]

    def close(self, reason):
        if not self.closing:
            self.closing = reason
        self.wakeup.set()


def http_chunk(data):
    """``data`` as one HTTP/1.1 chunk, for writing to a chunked response's socket directly."""
    return b"%X\r\n%b\r\n" % (len(data), data)


def chunk_of(event):
    """An event's frame as an HTTP chunk, encoded once per event and kept on it: every
    stream of the worker writes the same bytes."""
    chunk = event.chunk
    if chunk is None:
        chunk = event.chunk = http_chunk(event.frame)
    return chunk


def replay_batch(account_id, after_seq, upto_seq):
    """The next batch of missed events of a resuming stream (``after_seq < seq <= upto_seq``),
    read in the caller's database connection: the handshake's first batch and every later
    one are read here."""
    return events_between(account_id, after_seq, upto_seq, REPLAY_BATCH)


class EventStream:
    """An iterable WSGI body; gunicorn calls ``close`` when the stream ends or breaks."""

    def __init__(
        self,
        hub,
        sub,
        identity,
        *,
        resume_seq,
        replay_head=None,
        resync=None,
        retry_ms,
        heartbeat_seconds,
        request_id=None,
        connection=None,
    ):
        self.hub = hub
        self.sub = sub
        self.identity = identity
        self.resume_seq = resume_seq
        self.replay_head = replay_head  # the first replay batch, read with the handshake
        self.resync = resync  # (Last-Event-ID, reason) when the client's id cannot be resumed
        self.retry_ms = retry_ms
        self.heartbeat_seconds = heartbeat_seconds
        self.connection_id = sse.new_connection_id()
        self.request_id = request_id
        self.connection = connection  # see chunked_connection
        self.end_reason = None
        self.discarded = 0  # bytes the client sent after its request, read and dropped
        self.opened_at = time.monotonic()
        self._frames = self._generate()
        self._open = True
        metrics.OPEN_STREAMS.labels(identity.auth_type).inc()
        self._log("resume" if resume_seq is not None else "open", replayed=self.replay_count)

    @property
    def replay_count(self):
        return 0 if self.resume_seq is None else self.sub.start_seq - self.resume_seq

    def __iter__(self):
        # gunicorn iterates the generator itself (one interpreter level less on the saved
        # stack of every parked stream) and still calls ``close`` on this object.
        return self._frames

    def close(self):
        self._frames.close()
        self.hub.unsubscribe(self.sub)
        if self._open:
            self._open = False
            reason = self.end_reason or "client_disconnected"
            metrics.OPEN_STREAMS.labels(self.identity.auth_type).dec()
            metrics.STREAMS_CLOSED.labels(reason).inc()
            duration_ms = round((time.monotonic() - self.opened_at) * 1000)
            self._log("close", reason=reason, durationMs=duration_ms)

    def _log(self, what, **fields):
        logs.log_event(
            f"stream_{what}",
            requestId=self.request_id,
            connectionId=self.connection_id,
            accountId=self.identity.account_id,
            authType=self.identity.auth_type,
            tokenSource=self.identity.token_source,
            **fields,
        )

    def _generate(self):
        if self.connection is not None:
            # gunicorn's own writes to it (preamble, replay, the last chunk) are bounded too.
            self.connection.settimeout(self.hub.write_timeout)
        preamble = sse.retry_frame(self.retry_ms) + sse.frame(
            events.connection(
                self.identity,
                self.connection_id,
                resumed=self.resume_seq is not None,
                replayed=self.replay_count,
            )
        )
        if self.resync is not None:
            preamble += sse.frame(events.resync_required(*self.resync))
        corked = self.connection is not None and _cork(self.connection, True)
        yield preamble
        if corked:
            # gunicorn wrote the response's head and this preamble (two writes) while the
            # socket was corked: they leave as one segment now, not two.
            _cork(self.connection, False)
        if self.resume_seq is not None and not (yield from self._replay()):
            yield sse.jittered_retry_frame(*RETRY_RANGE_MS["replay_failed"]) + _closed_frame(
                "replay_failed"
            )
            return
        # The live loop runs in this generator's own frame, not behind a ``yield from``: a
        # parked stream's saved stack is one interpreter level shorter (about 0.6 KB).
        sub, clock, connection = self.sub, time.monotonic, self.connection
        # gevent's socket wraps a raw non-blocking one: the hub's writes must never yield.
        raw = connection._sock if connection is not None else None
        expires = self._expiry_deadline()
        next_beat = clock() + self.heartbeat_seconds
        hangup = None
        if raw is not None:
            # A client's FIN or RST makes its socket readable: the wake-up rings and the slot
            # is freed now, not when the next heartbeat's write fails.
            hangup = gevent.get_hub().loop.io(raw.fileno(), 1)
            hangup.start(sub.wakeup.set)
        try:
            while True:
                if raw is not None:
                    sub.attach(raw)
                if not (sub.frames or sub.closing):
                    sub.wakeup.wait(max(0.0, min(next_beat, expires) - clock()))
                unsent = sub.detach()  # from here until attach, only this greenlet writes
                if sub.closing == "client_disconnected" or (
                    raw is not None and self._client_gone(raw)
                ):
                    self.end_reason = "client_disconnected"
                    return
                now, frames = clock(), ()
                if sub.closing:
                    self.end_reason = sub.closing
                    out = self._closing_frames(sub.closing)
                elif now >= expires:
                    self.end_reason = "token_expired"
                    out = _closed_frame("token_expired")
                else:
                    since, frames = sub.since, sub.take()
                    out = b"".join(frames)
                    if now >= next_beat:
                        out += sse.frame(events.heartbeat(self.connection_id))
                        next_beat = now + self.heartbeat_seconds
                if raw is None:
                    if out:
                        yield out
                elif out or unsent:
                    # ``unsent``: the rest of a chunk the hub began.
                    data = unsent + http_chunk(out) if out else unsent
                    if not self._write(raw, data, expires):
                        _abort(raw)
                        return
                if self.end_reason:
                    return
                if frames:
                    metrics.COMMIT_TO_WRITE.observe(clock() - since)
        finally:
            if hangup is not None:
                hangup.stop()

    def _write(self, raw, data, expires):
        """Write ``data`` whole within the write timeout; False (and why, in ``end_reason``)
        when the stream must end first: a reader that stopped reading is cut off rather than
        parking this greenlet, its slot and its buffers forever."""
        sub, clock = self.sub, time.monotonic
        deadline = min(clock() + self.hub.write_timeout, expires)
        writable = None
        while True:
            try:
                data = data[raw.send(data) :]
            except BlockingIOError:
                pass
            except OSError:
                self.end_reason = "client_disconnected"
                return False
            if not data:
                return True
            now = clock()
            if sub.closing == "key_revoked":
                # A revoked key's client gets what the kernel takes now, and waits for nothing.
                self.end_reason = "key_revoked"
                return False
            if now >= deadline:
                self.end_reason = self.end_reason or (
                    "token_expired" if now >= expires else "write_timeout"
                )
                return False
            if writable is None:
                data = memoryview(data)
                writable = gevent.get_hub().loop.io(raw.fileno(), 2)
            sub.wakeup.clear()  # rung by the socket, a closing, a new frame or a hang-up
            writable.start(sub.wakeup.set)
            try:
                sub.wakeup.wait(deadline - now)
            finally:
                writable.stop()
            if self._client_gone(raw):
                self.end_reason = "client_disconnected"
                return False

    def _client_gone(self, raw):
        """Whether the client closed its end (EOF or reset). An SSE client sends nothing after
        its request: what it does send is read and dropped, up to ``DISCARD_LIMIT`` bytes in
        all, past which it counts as gone."""
        try:
            data = raw.recv(DISCARD_LIMIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        self.discarded += len(data)
        return not data or self.discarded > DISCARD_LIMIT

    def _replay(self):
        """Every missed event up to where live delivery starts, in batches; False if a batch
        could not be read (the stream then ends with ``replay_failed``, and the client resumes
        from what it has)."""
        after, upto = self.resume_seq, self.sub.start_seq
        batch, self.replay_head = self.replay_head, None
        while after < upto and not self.sub.closing:
            if batch is None:
                try:
                    with database.connection_context():
                        batch = replay_batch(self.identity.account_id, after, upto)
                except (peewee.PeeweeException, MaxConnectionsExceeded) as exc:
                    log.warning("replay of account %s failed: %s", self.identity.account_id, exc)
                    self.end_reason = "replay_failed"
                    return False
            if not batch:
                break
            metrics.EVENTS_REPLAYED.inc(len(batch))
            yield b"".join(event.frame for event in batch)
            after, batch = batch[-1].seq, None
        return True

    def _closing_frames(self, reason):
        # On shutdown the client may keep what was already queued; a revoked key may not.
        if reason != "server_shutdown":
            return _closed_frame(reason)
        pending = b"".join(self.sub.take())
        # Every stream of the worker ends now: spread their reconnections.
        retry = sse.jittered_retry_frame(*RETRY_RANGE_MS[reason])
        return pending + retry + _closed_frame(reason)

    def _expiry_deadline(self):
        if self.identity.expires_at is None:
            return float("inf")
        return time.monotonic() + (self.identity.expires_at - utcnow()).total_seconds()


def _cork(connection, on):
    """Hold (``on``) or release the socket's partial segments (Linux ``TCP_CORK``; the kernel
    releases them within 200 ms anyway); False where the option does not exist."""
    try:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1 if on else 0)
    except (AttributeError, OSError):  # no TCP_CORK here, or the client already left
        return False
    return True


def _closed_frame(reason):
    return sse.frame(events.stream_closed(reason))


def _abort(raw):
    """Drop a connection whose client cannot be written to: gunicorn's last write to it fails
    at once, and its close sends an RST, which frees the kernel's send buffer now (a FIN
    would wait behind the unread data)."""
    try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
