"""The body of one SSE response: preamble, replay from the log, then live frames.

It holds plain values only (no request context, no database connection while it waits);
each replay batch opens and closes its own short connection. ``close`` always releases the
subscription, even when the client left before the first byte.
"""

import time

from models import database

from . import sse
from .clock import utcnow
from .services.eventlog import frames_between

REPLAY_BATCH = 500


class EventStream:
    """An iterable WSGI body; gunicorn calls ``close`` when the stream ends or breaks."""

    def __init__(self, hub, sub, identity, *, resume_seq, retry_ms, heartbeat_seconds):
        self.hub = hub
        self.sub = sub
        self.identity = identity
        self.resume_seq = resume_seq
        self.retry_ms = retry_ms
        self.heartbeat_seconds = heartbeat_seconds
        self.connection_id = sse.new_connection_id()
        self._frames = self._generate()

    @property
    def replay_count(self):
        return 0 if self.resume_seq is None else self.sub.start_seq - self.resume_seq

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._frames)

    def close(self):
        self._frames.close()
        self.hub.unsubscribe(self.sub)

    def _generate(self):
        yield sse.retry_frame(self.retry_ms) + sse.connection_frame(
            self.identity,
            self.connection_id,
            resumed=self.resume_seq is not None,
            replayed=self.replay_count,
        )
        if self.resume_seq is not None:
            yield from self._replay()
        yield from self._live()

    def _replay(self):
        """Every missed event up to where live delivery starts, in batches."""
        after, upto = self.resume_seq, self.sub.start_seq
        while after < upto and not self.sub.closing:
            with database.connection_context():
                batch = frames_between(self.identity.account_id, after, upto, REPLAY_BATCH)
            if not batch:
                break
            yield b"".join(event.frame for event in batch)
            after = batch[-1].seq

    def _live(self):
        sub, clock = self.sub, time.monotonic
        expires = self._expiry_deadline()
        next_beat = clock() + self.heartbeat_seconds
        while True:
            sub.wakeup.wait(max(0.0, min(next_beat, expires) - clock()))
            if sub.closing:
                yield self._closing_frames(sub.closing)
                return
            now = clock()
            if now >= expires:
                yield sse.stream_closed_frame("token_expired")
                return
            if sub.frames:
                yield b"".join(sub.take())
            if now >= next_beat:
                yield sse.heartbeat_frame(self.connection_id)
                next_beat = now + self.heartbeat_seconds

    def _closing_frames(self, reason):
        # On shutdown the client may keep what was already queued; a revoked key may not.
        pending = b"".join(self.sub.take()) if reason == "server_shutdown" else b""
        return pending + sse.stream_closed_frame(reason)

    def _expiry_deadline(self):
        if self.identity.expires_at is None:
            return float("inf")
        return time.monotonic() + (self.identity.expires_at - utcnow()).total_seconds()
