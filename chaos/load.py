"""The load of a chaos run: SSE streams that behave like browsers, and the bank's payments.

Both run on one asyncio loop with raw sockets (no HTTP or SSE library on the hot path), so a
few thousand streams and hundreds of requests a second fit beside the servers on two cores.
"""

import asyncio
import json
import socket
import struct
import time
from collections import Counter

from bench.client import ChunkedBody
from tests.live import BANK_SECRET

STREAM_PATH = "/events/stream"
CONNECT_TIMEOUT = 15  # s for nginx to accept the TCP connection
# s for the answer's head: a browser waits as long as the proxy does (nginx gives up on an
# upstream after 60 s and closes the connection); a loaded server queues new streams.
ANSWER_TIMEOUT = 60


class SseParser:
    """HTTP/1.1 response head, chunked transfer coding and SSE frames, fed bytes as they come.

    ``feed`` returns the complete frames as dicts of their fields (``data`` lines joined)."""

    def __init__(self):
        self.status = 0
        self.head = b""
        self.chunked = False
        self.body = ChunkedBody()
        self.text = b""

    def feed(self, data):
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return []
            head, data = self.head[:end], self.head[end + 4 :]
            self.status = int(head[9:12])
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            if self.status != 200:
                return []
        if self.chunked:
            data = self.body.feed(data)
        text = self.text + data
        frames = []
        start = 0
        while (end := text.find(b"\n\n", start)) >= 0:
            frames.append(self._frame(text[start:end]))
            start = end + 2
        self.text = text[start:]
        return frames

    @staticmethod
    def _frame(block):
        fields, data = {}, []
        for line in block.decode().split("\n"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name:
                fields[name] = value
        if data:
            fields["data"] = "\n".join(data)
        return fields


def stream_request(api_key, last_event_id):
    head = [
        f"GET {STREAM_PATH} HTTP/1.1",
        "Host: qrevents.chaos",
        "Accept: text/event-stream",
        "Cache-Control: no-cache",
        f"Authorization: Bearer {api_key}",
    ]
    if last_event_id:
        head.append(f"Last-Event-ID: {last_event_id}")
    return ("\r\n".join(head) + "\r\n\r\n").encode()


class _Connection(asyncio.Protocol):
    """One TCP connection of a stream."""

    def __init__(self, stream):
        self.stream = stream
        self.parser = SseParser()
        self.transport = None
        self.ended_by_server = False  # a stream_closed frame, or the harness's own reset

    def connection_made(self, transport):
        self.transport = transport
        self.stream.attach(self)
        transport.write(stream_request(self.stream.api_key, self.stream.last_id))

    def data_received(self, data):
        self.stream.last_bytes_at = time.monotonic()
        for frame in self.parser.feed(data):
            self.ended_by_server |= frame.get("event") == "stream_closed"
            self.stream.on_frame(frame)
        if self.parser.status and self.parser.status != 200:
            self.stream.on_refused(self.parser.status)
            self.transport.close()

    def connection_lost(self, exc):
        self.stream.on_lost(self)

    def reset(self):
        """Close abruptly with a TCP RST, as a dead network path or a killed client does."""
        self.ended_by_server = True  # counted by the caller, under its own reason
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class BrowserStream:
    """An EventSource, as browsers implement it: reconnects after ``retry:`` ms with its
    Last-Event-ID on a network error or the end of the stream; on any answer but 200 a
    browser would give up for good (recorded as a violation; this one carries on, so the
    run keeps measuring). Silence longer than ``silence`` seconds once the stream answered
    (``ANSWER_TIMEOUT`` before) counts as a dead network
    path (the spec's own client does the same)."""

    def __init__(self, number, account, api_key, boundary_id, host, port, silence):
        self.number = number
        self.account = account
        self.api_key = api_key
        self.last_id = boundary_id
        self.host, self.port = host, port
        self.silence = silence
        self.retry_ms = 3000  # until the server says otherwise
        self.ids = []  # every durable event id received, in order of arrival
        self.connection = None
        self.connected_at = None
        self.last_bytes_at = time.monotonic()
        self.connections = 0
        self.resumed = 0
        self.replayed = 0
        self.closed_reasons = Counter()
        self.refusals = Counter()  # HTTP statuses other than 200
        self.resyncs = []  # resync_required frames (events the stream could not get)
        self.connect_failures = Counter()
        self.running = True
        self._reconnect = None

    def start(self, delay=0.0):
        self._reconnect = asyncio.get_running_loop().call_later(delay, self._connect)

    def _connect(self):
        self._reconnect = None
        if self.running:
            asyncio.ensure_future(self._open())

    async def _open(self):
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self.host, self.port),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            self.connect_failures[type(exc).__name__] += 1
            self._schedule()

    def on_frame(self, frame):
        if "retry" in frame:
            self.retry_ms = int(frame["retry"])
        event = frame.get("event")
        if "id" in frame:
            self.last_id = frame["id"]
            self.ids.append(frame["id"])
        elif event == "connection":
            self.connections += 1
            data = json.loads(frame["data"])
            self.resumed += bool(data.get("resumed"))
            self.replayed += int(data.get("replayed") or 0)
        elif event == "stream_closed":
            self.closed_reasons[json.loads(frame["data"]).get("reason")] += 1
        elif event == "resync_required":
            self.resyncs.append(json.loads(frame["data"]))

    def on_refused(self, status):
        self.refusals[status] += 1

    def on_lost(self, connection):
        if self.connection is connection:
            self.connection = None
        if not connection.ended_by_server and connection.parser.status == 200 and self.running:
            self.closed_reasons["connection lost"] += 1
        self._schedule()

    def _schedule(self):
        if self.running and self._reconnect is None:
            loop = asyncio.get_running_loop()
            self._reconnect = loop.call_later(self.retry_ms / 1000, self._connect)

    def attach(self, connection):
        self.connection = connection
        self.last_bytes_at = time.monotonic()

    def check_silence(self, now):
        if self.connection is None:
            return
        answered = self.connection.parser.status != 0
        if now - self.last_bytes_at > (self.silence if answered else ANSWER_TIMEOUT):
            self.closed_reasons["silence" if answered else "no answer in time"] += 1
            self.connection.reset()

    def drop(self):
        """The harness's fault: this stream's TCP connection reset; True if one was open."""
        if self.connection is None:
            return False
        self.closed_reasons["dropped by the harness"] += 1
        self.connection.reset()
        return True

    def stop(self):
        self.running = False
        if self._reconnect is not None:
            self._reconnect.cancel()
        if self.connection is not None:
            self.connection.transport.close()


class StreamFleet:
    """Every stream of the run."""

    def __init__(self, tenants, per_account, host, port, silence):
        self.streams = []
        for tenant in tenants:
            for _ in range(per_account):
                self.streams.append(
                    BrowserStream(
                        len(self.streams),
                        tenant.account_id,
                        tenant.api_key,
                        tenant.boundary_id,
                        host,
                        port,
                        silence,
                    )  # fmt: skip
                )
        self._watchdog = None

    def start(self, ramp_per_second=100):
        for stream in self.streams:
            stream.start(stream.number / ramp_per_second)
        self._watchdog = asyncio.ensure_future(self._watch())

    async def _watch(self):
        while True:
            await asyncio.sleep(1)
            now = time.monotonic()
            for stream in self.streams:
                stream.check_silence(now)

    def open_count(self):
        return sum(1 for stream in self.streams if stream.connection is not None)

    def drop(self, fraction, rng):
        chosen = rng.sample(self.streams, max(1, round(len(self.streams) * fraction)))
        return sum(stream.drop() for stream in chosen)

    def stop(self):
        if self._watchdog:
            self._watchdog.cancel()
        for stream in self.streams:
            stream.stop()


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one address, one request at a time on each."""

    def __init__(self, host, port, size):
        self.host, self.port = host, port
        self.idle = []
        self.gate = asyncio.Semaphore(size)

    async def request(self, method, path, body=None, headers=(), timeout=10.0):
        """``(status, parsed JSON body or None)``; OSError/TimeoutError when no answer came."""
        payload = json.dumps(body).encode() if body is not None else b""
        head = [f"{method} {path} HTTP/1.1", "Host: qrevents.chaos", *headers]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        message = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        async with self.gate:
            conn = self.idle.pop() if self.idle else None
            try:
                if conn is None:
                    conn = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), timeout
                    )
                reader, writer = conn
                writer.write(message)
                status, keep, answer = await asyncio.wait_for(self._read(reader), timeout)
            except BaseException:
                if conn is not None:
                    conn[1].transport.abort()
                raise
            if keep:
                self.idle.append(conn)
            else:
                conn[1].close()
        try:
            return status, json.loads(answer) if answer else None
        except ValueError:
            return status, None

    @staticmethod
    async def _read(reader):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0][9:12])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        if fields.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if not size:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size + 2))
            answer = b"".join(part[:-2] for part in parts)
        else:
            answer = await reader.readexactly(int(fields.get("content-length", 0)))
        return status, fields.get("connection") != "close", answer


class BankPayments:
    """Customers paying the merchants' QRs at the bank, and the bank notifying qrevents.

    Each payment is recorded at the simulated bank first (its answer is the PaymentQR,
    ``transactionId`` included), then notified to ``/api/qrsimple/notifyPaymentQR`` through
    nginx with the bank's bearer secret, as BANECO does: until qrevents answers 2xx with
    ``responseCode`` 0, up to ``attempts`` times, ``interval`` seconds apart. The harness
    sends the notification itself (rather than the simulator's notifier) so that it knows
    exactly which ones qrevents acknowledged.
    """

    def __init__(
        self, bank_pool, front_pool, tenants, rate, attempts=10, interval=1.0, max_in_flight=256
    ):
        self.bank = bank_pool
        self.front = front_pool
        self.tenants = tenants
        self.rate = rate
        self.attempts = attempts
        self.interval = interval
        self.paid = {t.account_id: [] for t in tenants}  # transactionIds the bank answered
        self.acknowledged = {t.account_id: set() for t in tenants}
        self.bank_failures = Counter()  # the bank's pay call failed (it may have paid anyway)
        self.notify_answers = Counter()  # every attempt's outcome
        self.given_up = []  # (account, transactionId): never acknowledged
        self.ack_latencies = []  # s from the first attempt to the acknowledgement
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.started = 0
        self.skipped = 0  # due while ``max_in_flight`` payments were still under way
        self._tasks = set()
        self._running = False

    async def run(self, seconds, rng):
        """Open loop: payments start on schedule whatever the answers' delay, but for those
        due while ``max_in_flight`` are under way (counted: the servers could not keep up),
        so that a saturated run still ends in bounded time."""
        self._running = True
        start = time.monotonic()
        number = 0
        while self._running and (due := start + number / self.rate) < start + seconds:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tenant = rng.choice(self.tenants)
            number += 1
            if self.in_flight >= self.max_in_flight:
                self.skipped += 1
                continue
            self.in_flight += 1
            task = asyncio.ensure_future(self._pay(tenant))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.started = number - self.skipped

    async def drain(self, timeout):
        """Wait for the payments under way (their notifications retried to the end)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def _pay(self, tenant):
        try:
            try:
                status, payment = await self.bank.request(
                    "POST", f"/simulator/qr/{tenant.qr_id}/status", {"status": "paid"}
                )
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self.bank_failures[type(exc).__name__] += 1
                return
            if status != 200:
                self.bank_failures[f"HTTP {status}"] += 1
                return
            self.paid[tenant.account_id].append(payment["transactionId"])
            await self._notify(tenant, payment)
        finally:
            self.in_flight -= 1

    async def _notify(self, tenant, payment):
        first = time.monotonic()
        headers = (f"Authorization: Bearer {BANK_SECRET}",)
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.interval)
            try:
                status, answer = await self.front.request(
                    "POST", "/api/qrsimple/notifyPaymentQR", {"payment": payment}, headers
                )
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self.notify_answers[type(exc).__name__] += 1
                continue
            code = _response_code(answer)
            self.notify_answers[f"HTTP {status}" + ("" if code == 0 else f" code {code}")] += 1
            if 200 <= status < 300 and code == 0:
                self.acknowledged[tenant.account_id].add(payment["transactionId"])
                self.ack_latencies.append(time.monotonic() - first)
                return
        self.given_up.append((tenant.account_id, payment["transactionId"]))

    def stop(self):
        self._running = False


def _response_code(answer):
    """BANECO's ``responseCode``, beside the envelope or inside its ``data``."""
    if not isinstance(answer, dict):
        return None
    if "responseCode" in answer:
        return answer["responseCode"]
    data = answer.get("data")
    return data.get("responseCode") if isinstance(data, dict) else None


async def replay_of(host, port, api_key, boundary_id, timeout=30):
    """The account's durable event ids after ``boundary_id``, as the server replays them to a
    new stream (the reference every stream is checked against)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    parser = SseParser()
    ids, expected = [], None
    try:
        writer.write(stream_request(api_key, boundary_id))
        deadline = time.monotonic() + timeout
        while expected is None or len(ids) < expected:
            data = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            if not data:
                raise EOFError(f"the replay ended after {len(ids)} of {expected} events")
            for frame in parser.feed(data):
                if frame.get("event") == "connection":
                    info = json.loads(frame["data"])
                    if not info.get("resumed"):
                        raise ValueError(f"the replay did not resume: {info}")
                    expected = int(info["replayed"])
                elif "id" in frame:
                    ids.append(frame["id"])
            if parser.status and parser.status != 200:
                raise ValueError(f"the replay was answered {parser.status}")
    finally:
        writer.transport.abort()
    return ids[:expected]
