"""The Python client (``clients/python``) against a live server, through every disruption a
long-running consumer meets: restarts, reloads, a killed worker, nginx in front, a cut in the
middle of a frame, refused connections, proxy errors, silence, revoked credentials.

Each scenario checks what a consumer counts on: every durable event exactly once, in order.
The client is imported from ``clients/python`` (pytest's ``pythonpath``), the way
``pip install ./clients/python`` lays it out; one test installs it into a fresh venv.
"""

import hashlib
import hmac
import itertools
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest
import requests
from qrevents_client import (
    AuthError,
    BankError,
    Conflict,
    Forbidden,
    NotFound,
    QrEventsClient,
    RateLimited,
    Unavailable,
    ValidationError,
    WebhookSignatureError,
    host_token,
    verify_webhook,
)
from qrevents_client.sse import SseParser
from qrevents_client.transport import error_from_response

from tests.conftest import missing_service
from tests.live import ROOT, Api, LiveServer, free_port
from tests.test_multiworker import wait_for
from tests.test_nginx import Nginx, nginx_binary

CLIENT_DIR = ROOT / "clients" / "python"
FAST = {"reconnect_delay": 0.05, "max_backoff": 0.5}  # before the server says its retry:


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the scenarios where what is tested is the client, not the backend."""
    tmp = tmp_path_factory.mktemp("pyclient")
    live = LiveServer(tmp, f"sqlite:///{tmp / 'qrevents.db'}", retry_ms=100).start()
    yield live
    live.stop()


@pytest.fixture
def api(server):
    return Api(server.base)


class Consumer:
    """An application's loop over ``events()``, in a thread; stopped from the test's."""

    def __init__(self, base, key, **options):
        self.client = QrEventsClient(base, api_key=key)
        self.stream = self.client.events(heartbeats=True, **{**FAST, **options})
        self.events, self.error = [], None
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()

    def _consume(self):
        try:
            for event in self.stream:
                if event.type != "heartbeat":
                    self.events.append(event)
        except Exception as exc:  # handed to the test, which fails with it
            self.error = exc

    @property
    def durable_ids(self):
        return [event.id for event in self.events if event.durable]

    def types(self, kind):
        return [event for event in self.events if event.type == kind]

    def wait_for(self, predicate, timeout=10):
        assert wait_for(lambda: self.error or predicate(), timeout), self.events
        assert self.error is None, self.error

    def wait_for_durable(self, count, timeout=10):
        self.wait_for(lambda: len(self.durable_ids) >= count, timeout)

    def stop(self):
        """``close()`` from another thread ends the loop, even one blocked in a read."""
        self.stream.close()
        self.thread.join(5)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


def connected(consumer, times=1):
    consumer.wait_for(lambda: len(consumer.types("connection")) >= times)


def pay(api, qr_id, count):
    """``count`` payments to a reusable QR; their bank transaction ids, in order."""
    ids = []
    for _ in range(count):
        response = api.pay(qr_id, "10.50")
        assert response.status_code == 200, response.text
        ids.append(response.json()["data"]["transactionId"])
    return ids


def assert_once_in_order(got, qr_id, transaction_ids):
    """``qr_created``, then per payment ``qr_payment`` and its balance update (the movement
    sequence numbered from 1), each once, nothing else, in this order."""
    expected = [re.escape(f"qr_created_{qr_id}")]
    for seq, transaction_id in enumerate(transaction_ids, 1):
        expected += [re.escape(f"qr_payment_{transaction_id}"), rf"balance_update_\d+_{seq}"]
    assert len(got) == len(expected), got
    for event_id, pattern in zip(got, expected, strict=True):
        assert re.fullmatch(pattern, event_id), (event_id, pattern, got)


def start_paying(api, tenant, consumer):
    """A reusable QR created while the consumer listens, and three payments it has seen."""
    connected(consumer)
    qr = api.create_qr(tenant, singleUse=False)
    transaction_ids = pay(api, qr["qrId"], 3)
    consumer.wait_for_durable(7)
    return qr["qrId"], transaction_ids


# ---- Through restarts: every durable event once, in order ------------------------------


@pytest.fixture
def restartable(make_server):
    return lambda **settings: make_server(retry_ms=100, **settings)


def fresh_connections(base):
    """An API helper that opens a connection per call: an idle keep-alive one would hold a
    stopping server up, or break under a call while its worker goes."""
    api = Api(base)
    api.session.headers["Connection"] = "close"
    return api


def test_resumes_through_nginx_across_sigterm_and_a_new_server_on_the_same_database(
    restartable, tmp_path
):
    if nginx_binary() is None:
        missing_service("the nginx tests need nginx (Debian's nginx-light; .ci/run installs it)")
    first = restartable()
    nginx = Nginx(tmp_path, first.port).start()
    try:
        api = fresh_connections(nginx.base)
        tenant = api.new_tenant()
        consumer = Consumer(nginx.base, tenant.api_key)
        qr_id, paid = start_paying(api, tenant, consumer)
        first.signal(signal.SIGTERM)
        consumer.wait_for(lambda: consumer.types("stream_closed"))
        first.process.wait(15)
        assert no_stream_served(nginx.base)  # until a server is back behind nginx
        restartable(port=first.port, database_url=first.env["QREVENTS_DATABASE_URL"])
        paid += pay(api, qr_id, 3)  # likely before the consumer is back: replayed to it
        connected(consumer, times=2)
        paid += pay(api, qr_id, 2)
        consumer.wait_for_durable(1 + 2 * len(paid))
        consumer.stop()
    finally:
        nginx.stop()
    assert consumer.types("stream_closed")[0].data["reason"] == "server_shutdown"
    assert_once_in_order(consumer.durable_ids, qr_id, paid)


def no_stream_served(base):
    """nginx with no upstream answers a stream 502, or (configured for browsers, whose
    EventSource gives up on a 502) closes the connection unanswered."""
    try:
        return requests.get(base + "/events/stream", timeout=5).status_code == 502
    except requests.ConnectionError:
        return True


def test_resumes_across_a_sighup_reload_and_a_killed_worker(restartable):
    live = restartable()
    api = fresh_connections(live.base)
    tenant = api.new_tenant()
    consumer = Consumer(live.base, tenant.api_key)
    qr_id, paid = start_paying(api, tenant, consumer)
    old_workers = set(live.worker_pids())
    live.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not (set(live.worker_pids()) - old_workers) or len(consumer.types("connection")) < 2:
        assert time.monotonic() < deadline, "no new worker served the consumer"
        paid += pay(api, qr_id, 1)  # payments all through the reload
        time.sleep(0.05)
    consumer.wait_for_durable(1 + 2 * len(paid))
    assert wait_for(lambda: set(live.worker_pids()).isdisjoint(old_workers), 10)
    (worker,) = live.worker_pids()
    os.kill(worker, signal.SIGKILL)
    paid += pay(api, qr_id, 3)  # served by the worker the master starts in its place
    connected(consumer, times=3)
    paid += pay(api, qr_id, 2)
    consumer.wait_for_durable(1 + 2 * len(paid))
    consumer.stop()
    # One for the reload; a draining worker may refuse a reconnect the same way.
    reasons = {event.data["reason"] for event in consumer.types("stream_closed")}
    assert reasons == {"server_shutdown"}
    assert_once_in_order(consumer.durable_ids, qr_id, paid)


# ---- Broken connections, from a proxy that misbehaves on cue ----------------------------


class ScriptedProxy:
    """A TCP proxy in front of a server. Each new connection does what the script says next
    (then "forward"): an HTTP status, a 200 stream that closes at once, canned bytes, or
    forwarding that is cut in the middle of a frame or stalls after a marker."""

    def __init__(self, upstream_port, script=(), port=None):
        self.upstream_port = upstream_port
        self.script = list(script)
        self.heads, self.opened_at = [], []
        self.sockets = []
        self.listener = socket.create_server(("127.0.0.1", port or 0))
        self.port = self.listener.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        hang_up(self.listener)
        for sock in self.sockets:
            hang_up(sock)

    def last_event_ids(self):
        found = (re.search(rb"(?im)^Last-Event-ID: (.*?)\r$", head) for head in self.heads)
        return [match.group(1).decode() if match else None for match in found]

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(65536)
            if not data:
                return client.close()
            head += data
        self.heads.append(head)
        self.opened_at.append(time.monotonic())
        action = self.script.pop(0) if self.script else ("forward", None)
        kind, arg = action
        if kind == "status":
            status, headers = arg
            body = b"<html>upstream trouble</html>"
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            client.sendall(
                f"HTTP/1.1 {status} Trouble\r\nContent-Type: text/html\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            return client.close()
        if kind == "bytes":  # a 200 event stream of these bytes, ended by closing
            client.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Connection: close\r\n\r\n" + arg
            )
            return client.close()
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        self.sockets.append(upstream)
        upstream.sendall(head)
        threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
        if kind.endswith("+close"):
            kind, close_header = kind.removesuffix("+close"), True
        else:
            close_header = False
        self._pipe(upstream, client, kind, arg, close_header)

    @staticmethod
    def _pipe(source, sink, kind="forward", marker=None, close_header=False):
        """Copy ``source`` to ``sink``; "cut" and "stall" act on the first ``marker``.
        ``close_header``: add ``Connection: close`` to the response head, as a server that
        closes a stream after it (http.client then detaches the socket from the connection)."""
        try:
            while data := source.recv(65536):
                at = data.find(marker) if marker else -1
                if at >= 0 and kind == "cut":
                    sink.sendall(data[: at + len(marker) // 2])  # half of the frame's line
                    break
                if close_header:
                    data, close_header = with_connection_close(data), False
                sink.sendall(data)
                if at >= 0 and kind == "stall":
                    while source.recv(65536):  # the server's bytes go nowhere from now on
                        pass
                    return
        except OSError:
            pass
        for sock in (source, sink):
            hang_up(sock)


def with_connection_close(response):
    """The response with its head saying ``Connection: close`` (and no other Connection)."""
    head, blank, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + blank + body


def hang_up(sock):
    """Close now, even while another thread is blocked reading it (close alone would not)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def proxies():
    started = []

    def start(*args, **kw):
        started.append(ScriptedProxy(*args, **kw))
        return started[-1]

    yield start
    for proxy in started:
        proxy.close()


def test_a_cut_in_the_middle_of_a_frame_resumes_with_the_last_whole_event(server, api, proxies):
    tenant = api.new_tenant()
    proxy = proxies(server.port, [("cut", b"event: qr_payment")])
    consumer = Consumer(proxy.base, tenant.api_key)
    connected(consumer)
    qr = api.create_qr(tenant, singleUse=False)
    consumer.wait_for_durable(1)
    paid = pay(api, qr["qrId"], 3)  # the first one's frame is cut half way
    consumer.wait_for_durable(7)
    consumer.stop()
    assert_once_in_order(consumer.durable_ids, qr["qrId"], paid)
    # The half frame named its id before the cut; the resume point is the last whole event.
    assert proxy.last_event_ids()[:2] == [None, f"qr_created_{qr['qrId']}"]


def test_connection_refused_for_a_while_then_the_server_comes(server, api, proxies, caplog):
    tenant = api.new_tenant()
    port = free_port()  # nothing listens there yet
    consumer = Consumer(f"http://127.0.0.1:{port}", tenant.api_key, max_backoff=0.2)
    time.sleep(1)
    refused = [r for r in caplog.records if "Connection refused" in r.getMessage()]
    assert len(refused) >= 3  # it kept trying, backing off
    proxies(server.port, port=port)
    connected(consumer)
    qr = api.create_qr(tenant)
    consumer.wait_for_durable(1)
    consumer.stop()
    assert consumer.durable_ids == [f"qr_created_{qr['qrId']}"]


def test_proxy_errors_and_refusals_are_retried_and_retry_after_is_honoured(server, api, proxies):
    tenant = api.new_tenant()
    overloaded = (
        b"retry: 50\n\nevent: stream_closed\n"
        b'data: {"reason":"overloaded","timestamp":"2026-01-01T00:00:00.000Z"}\n\n'
    )
    script = [
        ("status", (502, {})),
        ("status", (503, {"Retry-After": "1"})),
        ("status", (504, {})),
        ("status", (429, {"Retry-After": "0"})),
        ("bytes", overloaded),  # the server's own way to refuse a stream for a passing reason
    ]
    proxy = proxies(server.port, script)
    consumer = Consumer(proxy.base, tenant.api_key, max_backoff=1.2)
    connected(consumer)
    qr = api.create_qr(tenant)
    consumer.wait_for_durable(1)
    consumer.stop()
    assert len(proxy.heads) == 6
    assert proxy.opened_at[2] - proxy.opened_at[1] >= 1.0  # the 503's Retry-After
    assert [e.data["reason"] for e in consumer.types("stream_closed")] == ["overloaded"]
    assert consumer.durable_ids == [f"qr_created_{qr['qrId']}"]
    assert consumer.events[-1].retry == 100  # the server's retry: now, not the refusal's


@pytest.mark.parametrize("stall", ["stall", "stall+close"])
def test_silence_longer_than_two_heartbeats_is_a_dead_connection(server, api, proxies, stall):
    tenant = api.new_tenant()
    proxy = proxies(server.port, [(stall, b"event: qr_created")])
    # No heartbeat interval given: the consumer learns the server's 0.2 s from the stream.
    consumer = Consumer(proxy.base, tenant.api_key)
    connected(consumer)
    time.sleep(0.7)  # a few heartbeats to learn from
    first = api.create_qr(tenant)
    consumer.wait_for_durable(1)
    stalled = time.monotonic()
    second = api.create_qr(tenant)  # held by the stalled proxy
    consumer.wait_for_durable(2, timeout=5)
    waited = time.monotonic() - stalled
    consumer.stop()
    assert 0.4 <= waited < 2.0, waited  # two heartbeats of silence, then resumed at once
    assert consumer.stream.heartbeat_seconds == pytest.approx(0.2, abs=0.1)
    assert consumer.durable_ids == [f"qr_created_{first['qrId']}", f"qr_created_{second['qrId']}"]
    assert proxy.last_event_ids()[1] == f"qr_created_{first['qrId']}"


def test_close_from_another_thread_ends_a_loop_blocked_in_a_read(server, api, proxies):
    tenant = api.new_tenant()
    proxy = proxies(server.port, [("stall+close", b"event: connection")])
    consumer = Consumer(proxy.base, tenant.api_key, heartbeat_seconds=30)  # 61 s of patience
    connected(consumer)
    time.sleep(0.3)  # blocked reading a connection that says nothing
    started = time.monotonic()
    consumer.stop()
    assert time.monotonic() - started < 1
    assert len(proxy.heads) == 1  # it ended, it did not reconnect


def test_a_server_that_replays_too_much_never_yields_an_event_twice(proxies):
    def frame(event_id):
        return f'id: {event_id}\nevent: qr_created\ndata: {{"n":"{event_id}"}}\n\n'.encode()

    script = [
        ("bytes", b"retry: 10\n\n" + frame("a") + frame("b")),
        ("bytes", frame("a") + frame("b") + frame("c")),  # from too far back
    ]
    proxy = proxies(free_port(), script)
    seen = []
    client = QrEventsClient(proxy.base, api_key="qrk_x")
    with client.events(on_id=seen.append, **FAST) as stream:
        got = [event.id for event in itertools.islice(stream, 3)]
    assert got == ["a", "b", "c"]
    assert proxy.last_event_ids() == [None, "b"]
    assert seen == ["a", "b"]  # "c" is still in the caller's hands when it stopped


def test_resync_required_is_yielded_and_the_resume_point_kept_until_a_new_event(proxies):
    refused = (
        b'retry: 10\n\nevent: connection\ndata: {"resumed":false,"replayed":0}\n\n'
        b'event: resync_required\ndata: {"lastEventId":"old","reason":"expired"}\n\n'
    )
    after = b'id: new\nevent: qr_created\ndata: {"amount":1.50}\n\n'
    proxy = proxies(free_port(), [("bytes", refused), ("bytes", after)])
    client = QrEventsClient(proxy.base, api_key="qrk_x")
    with client.events(last_event_id="old", **FAST) as stream:
        got = list(itertools.islice(stream, 3))
    assert [(e.type, e.id) for e in got] == [
        ("connection", None),
        ("resync_required", None),
        ("qr_created", "new"),
    ]
    assert got[2].data == {"amount": Decimal("1.50")}
    # Nothing replaced "old" before the reconnect: the server is asked again, not skipped past.
    assert proxy.last_event_ids() == ["old", "old"]


def test_401_is_final(server, api):
    client = QrEventsClient(server.base, api_key="qrk_" + "0" * 40)
    started = time.monotonic()
    with pytest.raises(AuthError) as refused:
        next(iter(client.events(**FAST)))
    assert time.monotonic() - started < 2
    assert refused.value.status == 401


def test_a_revoked_key_ends_the_stream_and_then_the_iterator_with_auth_error(server, api):
    tenant = api.new_tenant()
    stream = QrEventsClient(server.base, api_key=tenant.api_key).events(**FAST)
    assert next(stream).type == "connection"
    jwt = {"Authorization": f"Bearer {tenant.jwt}"}
    assert api.delete(f"/api-keys/{tenant.api_key_id}", headers=jwt).status_code == 200
    closed = next(stream)
    with pytest.raises(AuthError) as refused:
        next(stream)
    assert (closed.type, closed.data["reason"]) == ("stream_closed", "key_revoked")
    assert refused.value.code == "key_revoked"


# ---- The SSE format, by the WHATWG rules -----------------------------------------------


def test_parser_follows_the_whatwg_line_rules():
    stream = (
        "\ufeffretry: 250\r\n: a comment\r\n\r\n"
        "id: one\revent: x\rdata: a\u2028b\x85c\r\r"  # CR endings; U+2028, U+0085 are data
        "id: two\ndata: line 1\ndata: line 2\ndata\n\n"  # data lines joined with LF
        "event: no_data\n\n"  # nothing dispatched without data
        "data:no space\r\n\r\n"
        "id: three\ndata: cut off"  # the stream ends mid-event: discarded
    ).encode()
    for pieces in (1, 3, len(stream)):  # split anywhere, even inside CRLF or a character
        parser, frames = SseParser(), []
        for start in range(0, len(stream), pieces):
            frames += parser.feed(stream[start : start + pieces])
        assert [(f.type, f.id, f.data) for f in frames] == [
            ("x", "one", "a\u2028b\x85c"),
            ("message", "two", "line 1\nline 2\n"),
            ("message", None, "no space"),
        ]
        assert frames[2].last_event_id == "two" and parser.retry_ms == 250


# ---- REST with typed errors and exact amounts ------------------------------------------


def test_rest_calls_use_decimal_and_raise_typed_errors(server, api):
    tenant = api.new_tenant()
    client = QrEventsClient(server.base, api_key=tenant.api_key)
    qr = client.create_qr(Decimal("0.10"), "BOB", "Pago", single_use=False)
    for _ in range(3):
        assert api.pay(qr["qrId"], "0.10").status_code == 200
    pages = client.list_payments(limit=2)
    assert len(pages.items) == 2 and pages.next_cursor
    assert len(list(client.payments(page_size=2))) == 3
    assert client.account()["balance"] == Decimal("0.30")  # never 0.30000000000000004
    assert [m["seq"] for m in client.movements(page_size=1)] == [3, 2, 1]
    assert client.get_qr(qr["qrId"])["amount"] == Decimal("0.10")
    assert client.cancel_qr(qr["qrId"])["status"] == "cancelled"
    with pytest.raises(TypeError):
        client.create_qr(0.1, "BOB", "float is not money")
    with pytest.raises(ValidationError) as invalid:
        client.create_qr(Decimal("1.234"), "BOB", "three decimals")
    assert "amount" in invalid.value.fields
    with pytest.raises(NotFound):
        client.release_payment("NOPE")
    with pytest.raises(Conflict) as not_held:
        client.release_payment(pages.items[0]["transactionId"])
    assert not_held.value.code == "not_held"
    with pytest.raises(AuthError):
        QrEventsClient(server.base, api_key="qrk_wrong").account()


@pytest.mark.parametrize(
    "status, code, kind",
    [
        (502, "bank_rejected", BankError),
        (504, "bank_unavailable", BankError),
        (502, None, Unavailable),  # a proxy's own 502: no envelope
        (503, "unavailable", Unavailable),
        (429, "rate_limited", RateLimited),
        (409, "bank_rejected", Conflict),
        (400, "invalid_json", ValidationError),
        (403, "forbidden", Forbidden),
    ],
)
def test_error_types_follow_the_status_and_the_envelopes_code(status, code, kind):
    """What the server answers is pinned live above; these are the answers main cannot give
    yet (the bank adapter) or only under load."""
    response = requests.Response()
    response.status_code, response.reason = status, "Trouble"
    response.headers["Retry-After"] = "7"
    envelope = {"success": False, "message": "No", "data": None, "error": {"code": code}}
    response._content = json.dumps(envelope).encode() if code else b"<html>502</html>"
    error = error_from_response(response)
    assert type(error) is kind and error.status == status and error.retry_after == 7
    assert error.code == (code or f"http_{status}")


# ---- verify_webhook --------------------------------------------------------------------

SECRET = "whsec_test_secret"
BODY = b'{"id":"qr_payment_T1","type":"qr_payment","data":{"amount":100.50}}'


def signature(body=BODY, secret=SECRET, timestamp=None):
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def test_verify_webhook_accepts_a_good_signature_among_several():
    header = f"{signature()},v1={'0' * 64}"
    assert verify_webhook(BODY, header, SECRET)["data"]["amount"] == Decimal("100.50")


@pytest.mark.parametrize(
    "body, header, code",
    [
        (BODY.replace(b"100.50", b"900.50"), lambda: signature(), "invalid_signature"),
        (BODY, lambda: signature(secret="whsec_other"), "invalid_signature"),
        (BODY, lambda: signature(timestamp=int(time.time()) - 301), "stale_signature"),
        (BODY, lambda: signature(timestamp=int(time.time()) + 301), "stale_signature"),
        (BODY, lambda: "v1=abc", "malformed_signature"),
        (BODY, lambda: "", "missing_signature"),
    ],
    ids=["tampered", "wrong-secret", "stale", "from-the-future", "no-timestamp", "absent"],
)
def test_verify_webhook_refuses(body, header, code):
    with pytest.raises(WebhookSignatureError) as refused:
        verify_webhook(body, header(), SECRET)
    assert refused.value.code == code


def test_host_token_is_a_standard_hs256_jwt_with_the_account_claim():
    import jwt

    token = host_token(
        "host-secret-of-at-least-32-bytes!!",
        account_id=42,
        issuer="erp",
        audience="qrevents",
        subject=7,
        lifetime=120,
    )
    claims = jwt.decode(
        token,
        "host-secret-of-at-least-32-bytes!!",
        algorithms=["HS256"],
        audience="qrevents",
        issuer="erp",
    )
    assert claims["qrevents_account"] == 42 and claims["sub"] == "7"
    assert claims["exp"] - claims["iat"] == 120
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            token, "another-secret-of-at-least-32-bytes", algorithms=["HS256"], audience="qrevents"
        )


# ---- qrevents-tail, and the package installed for real ---------------------------------


def tail(base, key, *extra):
    env = {**os.environ, "PYTHONPATH": str(CLIENT_DIR)}
    command = [sys.executable, "-m", "qrevents_client.tail", "--url", base, "--api-key", key]
    return subprocess.Popen(
        command + list(extra), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def json_lines(process):
    """Lines printed by ``process``, parsed, as they come."""
    lines = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(json.loads(line))

    threading.Thread(target=read, daemon=True).start()
    return lines


def durable_lines(lines, count):
    got = []
    while len(got) < count:
        line = lines.get(timeout=10)
        if line["id"]:
            got.append(line["id"])
    return got


def test_tail_prints_json_lines_and_resumes_from_its_state_file(server, api, tmp_path):
    tenant = api.new_tenant()
    state = tmp_path / "tail.state"
    first = tail(server.base, tenant.api_key, "--state", str(state))
    lines = json_lines(first)
    assert lines.get(timeout=10)["type"] == "connection"  # and no heartbeats
    qr = api.create_qr(tenant, singleUse=False)
    paid = pay(api, qr["qrId"], 1)
    got = durable_lines(lines, 3)
    assert wait_for(lambda: state.exists() and state.read_text().strip() == got[-1], 5)
    first.kill()
    first.wait()
    paid += pay(api, qr["qrId"], 2)  # while no tail runs
    second = tail(server.base, tenant.api_key, "--state", str(state))
    try:
        lines = json_lines(second)
        connection = lines.get(timeout=10)
        got += durable_lines(lines, 4)
        time.sleep(0.3)
        assert lines.empty()  # nothing more: no event printed twice
    finally:
        second.kill()
        second.wait()
    assert connection["data"]["resumed"] is True and connection["data"]["replayed"] == 4
    assert_once_in_order(got, qr["qrId"], paid)


def test_tail_exits_with_one_line_on_401(server):
    process = tail(server.base, "qrk_" + "0" * 40)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 2 and out == b""
    assert len(err.decode().splitlines()) == 1 and "401" in err.decode()


def test_pip_installs_the_client_into_a_fresh_venv(tmp_path):
    """Built as pip builds it, installed into a venv of its own, imported from there."""
    source = shutil.copytree(CLIENT_DIR, tmp_path / "source")  # builds write beside it
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = ["wheel", "--no-index", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist"]
    subprocess.run(pip + build + [source], check=True, timeout=60, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("qrevents_client-0.1.0-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    install = ["--python", venv / "bin" / "python", "install", "--no-index", "--no-deps", wheel]
    subprocess.run(pip + install, check=True, timeout=60, capture_output=True)
    # requests (with its own dependencies) from this interpreter; the client from the venv.
    deps = tmp_path / "deps"
    deps.mkdir()
    for name in ("requests", "urllib3", "idna", "certifi", "charset_normalizer"):
        (deps / name).symlink_to(os.path.dirname(__import__(name).__file__))
    env = {"PYTHONPATH": str(deps), "PATH": os.environ["PATH"]}
    check = "import qrevents_client as c; print(c.__version__, c.__file__)"
    result = subprocess.run(
        [venv / "bin" / "python", "-c", check], env=env, capture_output=True, text=True
    )
    version, location = result.stdout.split()
    assert version == "0.1.0" and location.startswith(str(venv)), result.stderr
    helped = subprocess.run(
        [venv / "bin" / "qrevents-tail", "--help"], env=env, capture_output=True
    )
    assert helped.returncode == 0 and b"--state" in helped.stdout
