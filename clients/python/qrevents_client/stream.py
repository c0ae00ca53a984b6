"""An account's event stream as an iterator that survives every kind of disruption.

What ends a connection, and what the iterator does about it:

- a clean end of the stream (``stream_closed``, a restart, a proxy's timeout), a cut in the
  middle of a chunk, a refused or reset connection, silence longer than two heartbeats, a
  ``429``, ``5xx`` from the server or a proxy: it reconnects with ``Last-Event-ID`` after the
  server's ``retry:`` delay, backing off exponentially with jitter (capped) while attempts keep
  failing, and never sooner than a ``Retry-After`` says;
- ``401``: it raises ``AuthError`` (the credential is gone; retrying cannot help), and other
  ``4xx`` their typed error.

The server replays what was missed exactly once; the iterator also drops any durable event it
has already yielded (by id), so a server or proxy that replays too much costs nothing.
"""

import http.client
import logging
import random
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
import urllib3

from .errors import retry_after_seconds
from .money import loads
from .sse import SseParser, SseProtocolError
from .transport import error_from_response

log = logging.getLogger("qrevents_client")

DEFAULT_HEARTBEAT_SECONDS = 30.0
MIN_HEARTBEAT_SECONDS = 0.05  # a shorter gap between two beats is a clock's glitch
SEEN_IDS = 10_000  # durable ids remembered for de-duplication
# What a dropped, refused, cut or silent connection raises; anything else is a bug to surface.
_BROKEN = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    SseProtocolError,
)


@dataclass(frozen=True)
class Event:
    """One event of the stream. ``data`` is the parsed JSON (amounts as ``Decimal``), or the
    raw text if it is not JSON; ``id`` is set for durable events only; ``retry`` is the
    reconnection delay in force, in milliseconds."""

    type: str
    id: str | None
    data: Any
    retry: int | None = None

    @property
    def durable(self):
        return self.id is not None


class EventStream:
    """Iterate it for events; it reconnects by itself. Use it as a context manager, or call
    ``close()`` (from any thread: a loop blocked waiting for the next event then ends).

    ``last_event_id`` names the last durable event your loop has finished with: it advances
    (and ``on_id`` is called with it) when you ask for the next event, so an event your code
    was handling when it crashed is delivered again on the next run rather than lost.
    """

    def __init__(
        self,
        url,
        headers,
        *,
        last_event_id=None,
        on_id=None,
        heartbeats=False,
        heartbeat_seconds=None,
        reconnect_delay=5.0,
        max_backoff=60.0,
        connect_timeout=10.0,
        session=None,
    ):
        self.url = url
        self.headers = dict(headers)
        self.last_event_id = last_event_id or None
        self.on_id = on_id
        self.heartbeats = heartbeats
        # Given: trusted as is. Not given: learned from the gaps between heartbeats.
        self.heartbeat_seconds = heartbeat_seconds or DEFAULT_HEARTBEAT_SECONDS
        self._learn_heartbeat = heartbeat_seconds is None
        self._heard_gap = False
        self.reconnect_delay = reconnect_delay
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.session = session or requests.Session()
        self._seen = OrderedDict()
        if self.last_event_id:
            self._remember(self.last_event_id)
        self._delivered = None  # the durable event yielded last, not yet finished with
        self._closed = threading.Event()
        self._response = None  # the open connection, for close() from another thread
        self._reader = None  # the thread iterating, which alone may touch the generator
        self._events = self._run()

    def __iter__(self):
        return self

    def __next__(self):
        self._reader = threading.get_ident()
        self._finish_delivered()
        return next(self._events)

    def close(self):
        self._closed.set()
        response = self._response
        if response is not None:
            _hang_up(response)
        if self._reader in (None, threading.get_ident()):
            self._events.close()
        # Otherwise the reading thread sees the flag (or its hung-up connection) and ends.

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def silence_limit(self):
        """Seconds without a byte after which the connection counts as dead: two heartbeats,
        plus a little for the network (61 s for the default 30 s heartbeat)."""
        return 2 * self.heartbeat_seconds + min(1.0, self.heartbeat_seconds)

    def _finish_delivered(self):
        if self._delivered is not None:
            event, self._delivered = self._delivered, None
            self.last_event_id = event.id
            if self.on_id is not None:
                self.on_id(event.id)

    def _run(self):
        try:
            yield from self._reconnecting()
        finally:
            self.session.close()

    def _reconnecting(self):
        failures = 0
        while not self._closed.is_set():
            lived, wait_at_least = False, 0.0
            try:
                with self._connect() as response:
                    self._response = response
                    if self._closed.is_set():  # close() came before it could hang this up
                        return
                    if _is_event_stream(response):
                        for event in self._read(response):
                            if self._closed.is_set():
                                return
                            lived = lived or event.type == "heartbeat" or event.durable
                            if event.type != "heartbeat" or self.heartbeats:
                                yield event
                        reason = "the stream ended"
                    elif response.status_code == 200 or _transient(response.status_code):
                        wait_at_least = retry_after_seconds(response.headers.get("Retry-After"))
                        wait_at_least = min(wait_at_least or 0.0, self._ceiling())
                        reason = f"HTTP {response.status_code}"
                    else:
                        raise error_from_response(response)
            except _BROKEN as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._response = None
            if self._closed.is_set():
                return
            failures = 0 if lived else failures + 1
            delay = max(self._backoff(failures), wait_at_least)
            log.warning("event stream: %s; reconnecting in %.2f s", reason, delay)
            self._closed.wait(delay)

    def _connect(self):
        headers = dict(self.headers, Accept="text/event-stream", **{"Cache-Control": "no-cache"})
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return self.session.get(
            self.url,
            headers=headers,
            stream=True,
            timeout=(self.connect_timeout, self.silence_limit),
        )

    def _read(self, response):
        parser, last_beat = SseParser(), None
        for chunk in _chunks(response):
            for frame in parser.feed(chunk):
                if parser.retry_ms is not None:
                    self.reconnect_delay = parser.retry_ms / 1000
                if frame.id is not None:
                    if frame.id in self._seen:
                        log.info("event stream: %s already delivered, skipped", frame.id)
                        continue
                    self._remember(frame.id)
                event = Event(frame.type, frame.id, _parse(frame.data), self._retry_ms())
                if event.type == "heartbeat" and self._learn_heartbeat:
                    beat = _server_time(event.data)
                    if last_beat is not None and beat is not None:
                        self._learn(beat - last_beat, response)
                    last_beat = beat
                if event.durable:
                    self._delivered = event
                yield event

    def _learn(self, gap, response):
        """Take the server's heartbeat interval from the times it wrote on two heartbeats in
        a row (arrival times lie: a backlog brings several beats at once). Never shorten a
        learned one: a late beat would otherwise make a healthy stream look dead."""
        if gap < MIN_HEARTBEAT_SECONDS:
            return
        learned = max(gap, self.heartbeat_seconds) if self._heard_gap else gap
        self._heard_gap = True
        if abs(learned - self.heartbeat_seconds) < 0.05 * self.heartbeat_seconds:
            return
        self.heartbeat_seconds = learned
        sock = _socket_of(response)
        if sock is not None:
            sock.settimeout(self.silence_limit)

    def _retry_ms(self):
        return round(self.reconnect_delay * 1000)

    def _remember(self, event_id):
        self._seen[event_id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)

    def _ceiling(self):
        return max(self.reconnect_delay, self.max_backoff)

    def _backoff(self, failures):
        """The server's ``retry:`` after a stream that lived; doubling per failed attempt up
        to ``max_backoff``; "equal jitter" (half fixed, half random) so clients spread out."""
        base = self.reconnect_delay
        ceiling = max(base, min(self.max_backoff, base * 2 ** min(failures, 30)))
        if failures == 0:
            ceiling = base
        return random.uniform(ceiling / 2, ceiling)


def _socket_of(response):
    """The socket a streaming response reads from. On a ``Connection: close`` response
    http.client detaches it from the connection object, so look in the body's reader too."""
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is None:
        reader = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock


def _hang_up(response):
    """End a connection another thread may be blocked reading (closing alone would not)."""
    sock = _socket_of(response)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _is_event_stream(response):
    content_type = response.headers.get("Content-Type", "")
    return response.status_code == 200 and content_type.startswith("text/event-stream")


def _transient(status):
    return status in (408, 429) or status >= 500


def _chunks(response):
    """The body as it arrives: each read returns what one receive brought, not a full
    buffer's worth (a full buffer would hold frames back)."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:  # urllib3 before 2.3
        yield from response.iter_content(chunk_size=None)
        return
    while chunk := read1(65536):
        yield chunk


def _server_time(data):
    """A heartbeat's ``timestamp`` (ISO 8601) in seconds; None if it has none."""
    try:
        return datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00")).timestamp()
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


def _parse(data):
    try:
        return loads(data)
    except ValueError:
        return data
