"""Golden streams: whole SSE responses, byte for byte, as a real server writes them.

Read off a raw socket (status line, headers, HTTP/1.1 chunks), de-chunked, then normalised.
The normalisation replaces only what differs from run to run, and nothing else:

- the ``Date`` header and ``X-Request-ID`` (a random id) values;
- ``"timestamp":"<ISO>"`` (when a frame was written) and ``conn_<ms>_<random>`` ids;
- the milliseconds in a status change's and a balance update's event id (when it happened);
- values this test chose or the server assigned to fresh rows (account, user, QR and payment
  ids), each replaced where it occurs by its name in angle brackets.

Each chunk is also checked to hold whole frames (the direct writes never split one).
"""

import re
import socket
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import fresh_database_url
from tests.live import Api, LiveServer
from tests.test_multiworker import wait_for

GOLDEN = Path(__file__).resolve().parent / "golden"
DESCRIPTION = "Pago de café\u2028línea"


@pytest.fixture(scope="module")
def quiet_server(backend, tmp_path_factory):
    """A server whose heartbeats never come within a test: a stream's bytes are all events."""
    tmp = tmp_path_factory.mktemp(f"golden-{backend}")
    live = LiveServer(tmp, fresh_database_url(backend, tmp), heartbeat_seconds=3600).start()
    yield live
    live.stop()


@pytest.fixture
def golden_api(quiet_server):
    return Api(quiet_server.base)


class RawStream:
    """One GET of the stream on a plain socket, its response kept as the bytes that came."""

    def __init__(self, base, headers, query=""):
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        lines = [f"GET /events/stream{query} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.received = b""

    def read_until(self, marker, timeout=5, count=1):
        """Read until ``marker`` is in what came ``count`` times (or the server closed, or the
        deadline)."""
        deadline = time.monotonic() + timeout
        while self.received.count(marker) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{marker!r} not seen in {self.received!r}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                break
            self.received += data
        return self

    def read_to_end(self, timeout=5):
        return self.read_until(b"\r\n0\r\n\r\n", timeout)

    def close(self):
        self.sock.close()

    def response(self):
        """``(head, chunks)``: the status line and headers, and the body's chunks."""
        head, _, body = self.received.partition(b"\r\n\r\n")
        chunks = []
        while body:
            size, _, rest = body.partition(b"\r\n")
            size = int(size, 16)
            assert rest[size : size + 2] == b"\r\n", "chunk framing"
            if size == 0:
                assert rest == b"\r\n", "nothing after the last chunk"
                break
            chunks.append(rest[:size])
            body = rest[size + 2 :]
        return head.decode(), chunks


def normalised(stream, replacements):
    """The stream's headers and de-chunked body as text, normalised (see the module docs)."""
    head, chunks = stream.response()
    for chunk in chunks:
        assert chunk.endswith(b"\n\n"), f"a chunk splits a frame: {chunk!r}"
    text = head + "\r\n\r\n" + b"".join(chunks).decode()
    text = re.sub(r"(?m)^Date: .*\r$", "Date: <date>\r", text)
    text = re.sub(r"(?m)^X-Request-ID: [0-9a-f]{32}\r$", "X-Request-ID: <request-id>\r", text)
    text = re.sub(r'"timestamp":"[^"]+"', '"timestamp":"<timestamp>"', text)
    text = re.sub(r"conn_\d{13}_[a-z0-9]{6}", "<connection-id>", text)
    text = re.sub(r"(qr_status_change_\d{20})_\d{13}", r"\1_<ms>", text)
    text = re.sub(r"balance_update_\d{13}_", "balance_update_<ms>_", text)
    for value in sorted(replacements, key=len, reverse=True):  # no prefix clashes
        text = text.replace(value, replacements[value])
    return text


def tenant_ids(tenant):
    """The replacements of a tenant's account and user ids."""
    return {
        f'"accountId":{tenant.account_id},': '"accountId":<account>,',
        f'"userId":{tenant.user_id},': '"userId":<user>,',
    }


def revoke(api, tenant, key_id):
    response = api.delete(f"/api-keys/{key_id}", headers={"Authorization": f"Bearer {tenant.jwt}"})
    assert response.status_code == 200, response.text


def new_key(api, tenant):
    key = api.admin(
        f"/admin/accounts/{tenant.account_id}/api-keys",
        {"name": "golden", "userId": tenant.user_id},
    )
    return key["key"], key["id"]


def produce_every_durable_event(api, tenant):
    """A QR created, paid (payment, balance, status change), another created and cancelled:
    every durable type. Returns the replacements of the ids the server or this test chose."""
    paid = api.create_qr(
        tenant,
        "100.50",
        description=DESCRIPTION,
        dueDate="2031-01-02T03:04:05.678Z",
        transactionId="GOLDEN_QR_1",
    )
    payment_id = "GOLD" + uuid.uuid4().hex[:12].upper()
    response = api.pay(
        paid["qrId"], "100.50", transaction_id=payment_id, senderName="Juan Pérez\u2029"
    )
    assert response.status_code == 200, response.text
    cancelled = api.create_qr(
        tenant,
        "7.00",
        description="Otro",
        dueDate="2031-01-02T03:04:05.678Z",
        transactionId="GOLDEN_QR_2",
        singleUse=False,
        modifyAmount=True,
    )
    response = api.post(f"/qr/{cancelled['qrId']}/cancel", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return {paid["qrId"]: "<qr-1>", cancelled["qrId"]: "<qr-2>", payment_id: "<payment>"}


def golden(name):
    return (GOLDEN / name).read_bytes().decode()


def test_live_stream_of_every_durable_event_ending_with_a_revoked_key(golden_api):
    api = golden_api
    tenant = api.new_tenant()
    stream = RawStream(api.base, tenant.headers)
    try:
        stream.read_until(b'"replayed":0}\n\n')
        ids = produce_every_durable_event(api, tenant)
        stream.read_until(b'"syncSource":"user"}\n\n', timeout=10)
        revoke(api, tenant, tenant.api_key_id)
        stream.read_to_end()
    finally:
        stream.close()
    assert normalised(stream, {**tenant_ids(tenant), **ids}) == golden("live.txt")


def test_resumed_stream_replays_the_log_after_last_event_id_then_goes_live(golden_api):
    api = golden_api
    tenant = api.new_tenant()
    ids = produce_every_durable_event(api, tenant)
    first_qr = next(qr_id for qr_id, name in ids.items() if name == "<qr-1>")
    key, key_id = new_key(api, tenant)
    headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": f"qr_created_{first_qr}"}
    stream = RawStream(api.base, headers)
    try:
        stream.read_until(b'"syncSource":"user"}\n\n', timeout=10)
        live = api.create_qr(
            tenant,
            "1.00",
            description="En vivo",
            dueDate="2031-01-02T03:04:05.678Z",
            transactionId="GOLDEN_QR_3",
        )
        stream.read_until(b'"status":"active"}\n\n', timeout=10)
        revoke(api, tenant, key_id)
        stream.read_to_end()
    finally:
        stream.close()
    ids[live["qrId"]] = "<qr-3>"
    assert normalised(stream, {**tenant_ids(tenant), **ids}) == golden("resumed.txt")


@pytest.mark.parametrize(
    "headers, query, name",
    [
        ({"Last-Event-ID": "qr_payment_NEVER_WRITTEN"}, "", "resync_unknown.txt"),
        # A line separator in the client's own id is escaped in the frame's JSON.
        ({}, "?lastEventId=a%E2%80%A8b%C2%85c", "resync_line_separator.txt"),
    ],
)
def test_unresumable_last_event_id_gets_resync_required(golden_api, headers, query, name):
    api = golden_api
    tenant = api.new_tenant()
    stream = RawStream(api.base, {**tenant.headers, **headers}, query)
    try:
        stream.read_until(b"event: resync_required\n")
        stream.read_until(b"}\n\n", timeout=5)
        revoke(api, tenant, tenant.api_key_id)
        stream.read_to_end()
    finally:
        stream.close()
    assert normalised(stream, tenant_ids(tenant)) == golden(name)


def test_another_workers_message_reaches_a_stream_as_the_frames_of_the_log(
    backend, tmp_path, redis_url
):
    """Redis carries data (version 2), not frames: from another worker's message a stream
    gets the very SSE frames of those events, line separators escaped."""
    import redis

    from qrevents.events import EventRecord
    from qrevents.redis_broker import encode_events_message
    from tests.conftest import redis_prefix

    prefix = redis_prefix()
    live = LiveServer(
        tmp_path,
        fresh_database_url(backend, tmp_path),
        heartbeat_seconds=3600,
        redis_url=redis_url,
        redis_prefix=prefix,
    ).start()
    try:
        api = Api(live.base)
        tenant = api.new_tenant()
        account = tenant.account_id
        events = [
            ("qr_created", "qr_created_26113012345678901234", '{"a":"caf\u00e9\u2028"}'),
            ("qr_payment", "qr_payment_T1", '{"amount":100.50}'),
            ("account_balance_update", "balance_update_1764547200000_1", '{"n":null}'),
        ]
        sent = [EventRecord(account, seq, *event) for seq, event in enumerate(events, 1)]
        channel = f"{prefix}events:{{{account}}}"
        stream = RawStream(api.base, tenant.headers)
        try:
            stream.read_until(b'"replayed":0}\n\n')
            publisher = redis.Redis.from_url(redis_url)
            assert wait_for(lambda: publisher.pubsub_numsub(channel)[0][1] == 1, timeout=5)
            publisher.publish(channel, encode_events_message(account, sent))
            stream.read_until(b"null}\n\n\r\n", timeout=10)
        finally:
            stream.close()
    finally:
        live.stop()
    _, chunks = stream.response()
    expected = b"".join(
        f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n".encode()
        for event_type, event_id, data in events
    ).replace("\u2028".encode(), b"\\u2028")
    assert b"".join(chunks[1:]) == expected  # after the preamble
    assert b"\\u2028" in expected  # the line separator escaped, as every frame has it
