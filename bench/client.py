"""The load generator: many SSE streams and an open-loop publisher in one asyncio process.

Raw asyncio protocols (on uvloop when installed): no HTTP or SSE library on the hot path.
Streams connect from several 127.0.0.x source addresses, so one process can hold tens of
thousands. Every event the bench triggers carries ``BENCH-<seq>-<due ns>;`` in its payload,
``due`` being the CLOCK_MONOTONIC time the request was scheduled for: latency is taken from
that (queueing in the client counts against the server, as in an open-loop test) to the
arrival of the frame at each stream.
"""

import asyncio
import time
from collections import Counter
from time import monotonic_ns

MARK = b"BENCH-"
SOURCES = tuple(f"127.0.0.{n}" for n in range(2, 18))
ANSWER_TIMEOUT = 30  # s a stream waits for its status line before counting as failed


def marker(seq, due_ns):
    """The text a triggering request carries so each subscriber can time and count it."""
    return f"BENCH-{seq}-{due_ns};"


class Tally:
    """What the streams received during one phase."""

    def __init__(self):
        self.latencies = []  # ns, one per delivery
        self.arrivals = {}  # seq -> [deliveries, first arrival ns, last arrival ns, due ns]
        self.duplicates = 0

    def record(self, stream, seq, due, now):
        if seq in stream.seen:
            self.duplicates += 1
            return
        stream.seen.add(seq)
        self.latencies.append(now - due)
        entry = self.arrivals.get(seq)
        if entry is None:
            self.arrivals[seq] = [1, now, now, due]
        else:
            entry[0] += 1
            entry[2] = now

    @property
    def deliveries(self):
        return len(self.latencies)


class Stream(asyncio.Protocol):
    """One SSE stream: de-chunks, splits frames, records markers, keeps the last id."""

    def __init__(self, pool, channel, request, answered_on_connect=False):
        self.pool = pool
        self.channel = channel
        self.request = request
        self.answered_on_connect = answered_on_connect
        # Resolved when the server answered (first frame or status), or the socket closed.
        self.answered = asyncio.get_running_loop().create_future()
        self.transport = None
        self.started = monotonic_ns()
        self.first = 0  # ns of the first frame
        self.status = 0
        self.head = b""
        self.chunked = False
        self.body = ChunkedBody()
        self.buf = b""
        self.seen = set()
        self.last_id = None
        self.open = False
        self.closed_reason = None
        self.gave_up = False  # the pool stopped waiting for its answer

    def connection_made(self, transport):
        self.transport = transport
        self.open = True
        transport.write(self.request)
        self.pool.connected += 1
        if self.answered_on_connect:
            self._answer()

    def _answer(self):
        if not self.answered.done():
            self.answered.set_result(None)

    def connection_lost(self, exc):
        self.open = False
        self.pool.on_lost(self)
        self._answer()

    def data_received(self, data):
        now = monotonic_ns()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            self.head = b""
            self.status = int(head[9:12])
            self.chunked = b"chunked" in head.lower()
            self.pool.on_status(self)
            if self.status != 200:
                self._answer()
                self.transport.close()
                return
        if self.chunked:
            data = self.body.feed(data)
        buf = self.buf + data if self.buf else data
        start = 0
        while (end := buf.find(b"\n\n", start)) >= 0:
            self._frame(buf, start, end, now)
            start = end + 2
        self.buf = buf[start:]

    def _frame(self, buf, start, end, now):
        if not self.first:
            self.first = now
            self.pool.on_first(self)
            self._answer()
        if buf.startswith(b"id:", start):
            line_end = buf.find(b"\n", start)
            self.last_id = buf[start + 3 : line_end].strip().decode()
        at = buf.find(MARK, start, end)
        if at >= 0:
            stop = buf.find(b";", at, end)
            seq, due = buf[at + 6 : stop].split(b"-")
            self.pool.tally.record(self, int(seq), int(due), now)
        elif buf.find(b"stream_closed", start, end) >= 0:
            self.closed_reason = "stream_closed"


class ChunkedBody:
    """An HTTP/1.1 chunked body fed as it arrives: ``feed`` returns the bytes of the chunks
    it completes or continues; after the last chunk (size 0) nothing more."""

    __slots__ = ("chunk_left", "skip", "raw", "ended")

    def __init__(self):
        self.chunk_left = 0
        self.skip = 0  # the CRLF after a chunk's data
        self.raw = b""  # a size line not yet whole
        self.ended = False

    def feed(self, data):
        if self.ended:
            return b""
        raw = self.raw + data if self.raw else data
        out, pos, size = [], 0, len(raw)
        while pos < size:
            if self.chunk_left:
                take = min(self.chunk_left, size - pos)
                out.append(raw[pos : pos + take])
                pos += take
                self.chunk_left -= take
                if not self.chunk_left:
                    self.skip = 2
            elif self.skip:
                step = min(self.skip, size - pos)
                pos += step
                self.skip -= step
            else:
                end = raw.find(b"\r\n", pos)
                if end < 0:
                    break
                self.chunk_left = int(raw[pos:end].split(b";")[0], 16)
                pos = end + 2
                if not self.chunk_left:
                    self.ended = True
                    pos = size
        self.raw = raw[pos:]
        return b"".join(out)


class StreamPool:
    """Every stream of a run, and counters the scenarios wait on."""

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.streams = []
        self.tally = Tally()
        self.connected = 0
        self.firsts = 0
        self.ok = 0
        self.rejected = 0
        self.failed = 0
        self.lost = 0
        # Why streams did not open: "HTTP <status>", an exception's name, "no answer in
        # <n> s", or "closed unanswered" (the server closed the socket before any status).
        self.failures = Counter()

    def on_status(self, stream):
        if stream.status == 200:
            self.ok += 1
        else:
            self.rejected += 1
            self.failures[f"HTTP {stream.status}"] += 1

    def on_first(self, stream):
        self.firsts += 1

    def on_lost(self, stream):
        self.lost += 1
        if not stream.status and not stream.answered_on_connect and not stream.gave_up:
            self.failures["closed unanswered"] += 1

    @property
    def open_streams(self):
        # flask-sse sends no status line before its first event: an open socket counts.
        return sum(1 for stream in self.streams if stream.open and stream.status in (0, 200))

    async def open(self, specs, rate, in_flight, answered_on_connect=False):
        """Connect ``(channel, request)`` streams at most ``rate``/s and ``in_flight`` at once.

        A connection stops counting as in flight once answered (its first frame, or for a
        server that sends nothing first, once connected), so the ramp never outruns the
        server's accept queue.
        """
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(in_flight)
        opened = []
        start = time.monotonic()

        async def connect(index, channel, request):
            stream = None
            try:
                _, stream = await loop.create_connection(
                    lambda: Stream(self, channel, request, answered_on_connect),
                    self.host,
                    self.port,
                    local_addr=(SOURCES[index % len(SOURCES)], 0),
                )
                opened.append(stream)
                self.streams.append(stream)
                await asyncio.wait_for(asyncio.shield(stream.answered), ANSWER_TIMEOUT)
            except TimeoutError:
                stream.gave_up = True
                self.failed += 1
                self.failures[f"no answer in {ANSWER_TIMEOUT} s"] += 1
            except OSError as exc:
                self.failed += 1
                self.failures[type(exc).__name__] += 1
            finally:
                gate.release()

        tasks = []
        for index, (channel, request) in enumerate(specs):
            due = start + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            tasks.append(asyncio.create_task(connect(len(self.streams) + index, channel, request)))
        await asyncio.gather(*tasks)
        return opened

    def close(self, streams):
        for stream in streams:
            if stream.transport is not None:
                stream.transport.close()
        dropped = set(map(id, streams))
        self.streams = [stream for stream in self.streams if id(stream) not in dropped]


class HttpConnection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection that carries one request at a time."""

    def __init__(self, client):
        self.client = client
        self.transport = None
        self.waiter = None
        self.buf = b""
        self.need = None
        self.body_at = 0
        self.status = 0
        self.alive = True

    def connection_made(self, transport):
        self.transport = transport

    def send(self, request):
        self.waiter = asyncio.get_running_loop().create_future()
        self.buf, self.need, self.status = b"", None, 0
        self.transport.write(request)
        return self.waiter

    def data_received(self, data):
        self.buf += data
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            self.status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
            self.body_at = end + 4
            self.need = self.body_at + length
        if len(self.buf) >= self.need and self.waiter is not None:
            waiter, self.waiter = self.waiter, None
            waiter.set_result((self.status, self.buf[self.body_at : self.need]))
            self.client.release(self)

    def connection_lost(self, exc):
        self.alive = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("publisher connection lost"))
        self.client.forget(self)


class HttpClient:
    """A bounded pool of keep-alive connections for publishing and set-up calls."""

    def __init__(self, host, port, max_connections=256):
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.idle = []
        self.count = 0
        self.waiters = []
        self.errors = 0

    async def request(self, raw):
        """``(status, body)`` of one request; raises ``ConnectionError`` if the server left."""
        conn = await self._acquire()
        return await conn.send(raw)

    async def _acquire(self):
        while self.idle:
            conn = self.idle.pop()
            if conn.alive:
                return conn
        if self.count < self.max_connections:
            self.count += 1
            try:
                _, conn = await asyncio.get_running_loop().create_connection(
                    lambda: HttpConnection(self), self.host, self.port
                )
            except OSError:
                self.count -= 1
                raise
            return conn
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def release(self, conn):
        while self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def forget(self, conn):
        self.count -= 1
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self):
        for conn in self.idle:
            conn.transport.close()
        self.idle = []


def http_request(method, path, body=b"", headers=()):
    """The raw bytes of one HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", "Host: bench"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def open_loop(client, make_request, rate, duration, on_result, max_outstanding):
    """Send ``rate``/s requests for ``duration`` s on schedule, never waiting for answers.

    ``make_request(index, due_ns)`` builds each request; ``on_result(index, status)`` is
    called with the status (0 if the connection failed). A request due while
    ``max_outstanding`` are unanswered is not sent (the server is far past its capacity;
    this only bounds the run). Returns the number not sent, once every answer is in.
    """
    start = monotonic_ns()
    total = int(rate * duration)
    step = 1e9 / rate
    tasks = []
    outstanding = 0
    skipped = 0

    async def send(index, raw):
        nonlocal outstanding
        try:
            status, _ = await client.request(raw)
        except (ConnectionError, OSError):
            status = 0
        outstanding -= 1
        on_result(index, status)

    for index in range(total):
        due = start + int(index * step)
        delay = due - monotonic_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        if outstanding >= max_outstanding:
            skipped += 1
            continue
        outstanding += 1
        # Late: the schedule counts (no coordinated omission). Early (timer slack): now.
        stamp = max(due, monotonic_ns())
        tasks.append(asyncio.create_task(send(index, make_request(index, stamp))))
    await asyncio.gather(*tasks)
    return skipped
