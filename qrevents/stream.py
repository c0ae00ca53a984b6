"""The body of one SSE response: preamble, replay from the log, then live frames.

It holds plain values only (no request context, no database connection while it waits);
each replay batch opens and closes its own short connection. ``close`` always releases the
subscription, even when the client left before the first byte.
"""

import time

from models import database

from . import logs, metrics, sse
from .clock import utcnow
from .services.eventlog import frames_between

REPLAY_BATCH = 500


class EventStream:
    """An iterable WSGI body; gunicorn calls ``close`` when the stream ends or breaks."""

    def __init__(
        self, hub, sub, identity, *, resume_seq, retry_ms, heartbeat_seconds, request_id=None
    ):
        self.hub = hub
        self.sub = sub
        self.identity = identity
        self.resume_seq = resume_seq
        self.retry_ms = retry_ms
        self.heartbeat_seconds = heartbeat_seconds
        self.connection_id = sse.new_connection_id()
        self.request_id = request_id
        self.end_reason = None
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
        yield sse.retry_frame(self.retry_ms) + sse.connection_frame(
            self.identity,
            self.connection_id,
            resumed=self.resume_seq is not None,
            replayed=self.replay_count,
        )
        if self.resume_seq is not None:
            yield from self._replay()
        # Live frames come from this generator's own frame, not from behind a ``yield from``:
        # a parked stream's saved stack is one interpreter level shorter (about 0.6 KB).
        sub, clock = self.sub, time.monotonic
        expires = self._expiry_deadline()
        next_beat = clock() + self.heartbeat_seconds
        while True:
            sub.wakeup.wait(max(0.0, min(next_beat, expires) - clock()))
            if sub.closing:
                self.end_reason = sub.closing
                yield self._closing_frames(sub.closing)
                return
            now = clock()
            if now >= expires:
                self.end_reason = "token_expired"
                yield sse.stream_closed_frame("token_expired")
                return
            if sub.frames:
                since = sub.since
                yield b"".join(sub.take())
                metrics.COMMIT_TO_WRITE.observe(clock() - since)
            if now >= next_beat:
                yield sse.heartbeat_frame(self.connection_id)
                next_beat = now + self.heartbeat_seconds

    def _replay(self):
        """Every missed event up to where live delivery starts, in batches."""
        after, upto = self.resume_seq, self.sub.start_seq
        while after < upto and not self.sub.closing:
            with database.connection_context():
                batch = frames_between(self.identity.account_id, after, upto, REPLAY_BATCH)
            if not batch:
                break
            metrics.EVENTS_REPLAYED.inc(len(batch))
            yield b"".join(event.frame for event in batch)
            after = batch[-1].seq

    def _closing_frames(self, reason):
        # On shutdown the client may keep what was already queued; a revoked key may not.
        pending = b"".join(self.sub.take()) if reason == "server_shutdown" else b""
        return pending + sse.stream_closed_frame(reason)

    def _expiry_deadline(self):
        if self.identity.expires_at is None:
            return float("inf")
        return time.monotonic() + (self.identity.expires_at - utcnow()).total_seconds()
