"""The wire as a client meets it: headers, retry, connection, heartbeats, every event's shape."""

import json
import re
import socket
import struct
import sys
import time

import pytest
import requests

CONNECTION_KEYS = {
    "message",
    "accountId",
    "userId",
    "connectionId",
    "authType",
    "tokenSource",
    "timestamp",
    "resumed",
    "replayed",
}
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def test_stream_starts_with_headers_retry_and_connection_event(api, tenant):
    with api.stream(tenant) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["Cache-Control"] == "no-cache"
        assert stream.headers["X-Accel-Buffering"] == "no"
        first = stream.next(timeout=2)
        assert stream.raw[0] == b"retry: 5000\n"
        assert stream.retry == 5000
    assert first.event == "connection" and first.id is None
    assert set(first.data) == CONNECTION_KEYS
    assert first.data["accountId"] == tenant.account_id
    assert first.data["userId"] == tenant.user_id
    assert re.fullmatch(r"conn_\d{13}_[a-z0-9]{6}", first.data["connectionId"])
    assert ISO_MS.match(first.data["timestamp"])
    assert first.data["resumed"] is False and first.data["replayed"] == 0


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_CORK and tcp_info are Linux's")
def test_the_head_and_the_preamble_reach_the_client_in_one_segment(api, tenant):
    """gunicorn writes the response's head and the preamble with two sends; the stream corks
    its socket around them, so they leave as one TCP segment (a segment less for the kernel
    to send and the client to take). ``tcpi_data_segs_in`` (offset 152 of Linux's
    ``tcp_info``) counts the data segments the client received."""
    host, port = api.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        request = f"GET /events/stream HTTP/1.1\r\nHost: {host}\r\n"
        request += "".join(f"{k}: {v}\r\n" for k, v in tenant.headers.items()) + "\r\n"
        sock.sendall(request.encode())
        received = b""
        while not received.endswith(b"\n\n\r\n"):  # the preamble's chunk, whole
            received += sock.recv(65536)
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    assert received.startswith(b"HTTP/1.1 200 OK") and b"event: connection" in received
    assert struct.unpack_from("I", info, 152) == (1,)


def test_heartbeats_arrive_without_ids(api, tenant):
    with api.stream(tenant) as stream:
        connection = stream.next()
        beats = [stream.next(timeout=2) for _ in range(3)]
    assert [b.event for b in beats] == ["heartbeat"] * 3
    assert all(b.id is None for b in beats)
    assert all(set(b.data) == {"timestamp", "connectionId"} for b in beats)
    assert {b.data["connectionId"] for b in beats} == {connection.data["connectionId"]}


@pytest.mark.parametrize(
    "place, auth_type, source",
    [
        ("query-api-key", "apikey", "query"),
        ("query-token-jwt", "jwt", "query"),
        ("query-token-api-key", "apikey", "query"),
        ("bearer-jwt", "jwt", "header"),
        ("bearer-api-key", "apikey", "header"),
        ("x-api-key", "apikey", "header"),
    ],
)
def test_every_credential_place_is_accepted_and_reported(api, tenant, place, auth_type, source):
    options = {
        "query-api-key": {"params": {"api-key": tenant.api_key}},
        "query-token-jwt": {"params": {"token": tenant.jwt}},
        "query-token-api-key": {"params": {"token": tenant.api_key}},
        "bearer-jwt": {"headers": {"Authorization": f"Bearer {tenant.jwt}"}},
        "bearer-api-key": {"headers": {"Authorization": f"Bearer {tenant.api_key}"}},
        "x-api-key": {"headers": {"X-API-Key": tenant.api_key}},
    }[place]
    with api.stream(**options) as stream:
        assert stream.status == 200
        connection = stream.next()
    assert connection.data["authType"] == auth_type
    assert connection.data["tokenSource"] == source


@pytest.mark.parametrize("path", ["/events/stream", "/api/events/stream"])
def test_stream_is_served_under_both_prefixes(api, tenant, path):
    with api.stream(tenant, path=path) as stream:
        assert stream.status == 200
        assert stream.next().event == "connection"


def test_every_durable_event_has_the_contracts_keys_and_id_format(api, tenant):
    with api.stream(tenant) as stream:
        stream.next()
        qr = api.create_qr(tenant, "100.50")
        paid = api.pay(qr["qrId"], "100.50", transaction_id="TXN_123456")
        assert paid.status_code == 200, paid.text
        created, payment, balance, status = stream.take(4)

    assert created.event == "qr_created"
    assert created.id == f"qr_created_{qr['qrId']}"
    assert set(created.data) == {
        "qrId",
        "transactionId",
        "amount",
        "currency",
        "description",
        "dueDate",
        "singleUse",
        "modifyAmount",
        "status",
    }
    assert created.data["status"] == "active" and created.data["amount"] == 100.5

    assert payment.event == "qr_payment" and payment.id == "qr_payment_TXN_123456"
    assert set(payment.data) == {
        "qrId",
        "transactionId",
        "amount",
        "currency",
        "senderName",
        "senderDocumentId",
        "senderAccount",
        "senderBankCode",
        "description",
        "paymentDate",
        "paymentTime",
        "singleUse",
        "newStatus",
        "review",
        "reviewReason",
    }
    assert payment.data["newStatus"] == "used" and payment.data["review"] is False
    assert payment.data["paymentDate"] == "2026-01-15T10:30:00.000Z"
    assert payment.data["paymentTime"] == "10:30:00"

    assert balance.event == "account_balance_update"
    assert re.fullmatch(r"balance_update_\d{13}_1", balance.id)
    assert set(balance.data) == {
        "accountId",
        "movementType",
        "amount",
        "previousBalance",
        "newBalance",
        "previousAvailableBalance",
        "newAvailableBalance",
        "description",
        "qrId",
        "transactionId",
        "currency",
    }
    assert balance.data["newBalance"] == 100.5 and balance.data["previousBalance"] == 0

    assert status.event == "qr_status_change"
    assert re.fullmatch(rf"qr_status_change_{qr['qrId']}_\d{{13}}", status.id)
    assert set(status.data) == {
        "qrId",
        "previousStatus",
        "newStatus",
        "amount",
        "currency",
        "description",
        "singleUse",
        "dueDate",
        "syncSource",
    }
    assert (status.data["previousStatus"], status.data["newStatus"]) == ("active", "used")
    assert status.data["syncSource"] == "payment"


def test_amounts_are_written_with_two_decimals_on_the_wire(api, tenant):
    with api.stream(tenant) as stream:
        stream.next()
        api.create_qr(tenant, "100.50")
        stream.take(1)
    frame = b"".join(stream.raw).decode()
    assert '"amount":100.50' in frame


def test_qr_ids_are_twenty_digits_starting_with_the_banks_la_paz_date(api, tenant):
    from qrevents.clock import la_paz_today

    qr = api.create_qr(tenant)
    assert re.fullmatch(r"\d{20}", qr["qrId"])
    assert qr["qrId"][:6] == la_paz_today().strftime("%y%m%d")


def test_stream_ticket_works_once_and_keeps_the_credentials_kind(api, tenant):
    response = api.post("/events/ticket", headers={"Authorization": f"Bearer {tenant.jwt}"})
    assert response.status_code == 201
    ticket = response.json()["data"]["ticket"]
    with api.stream(params={"ticket": ticket}) as stream:
        assert stream.status == 200
        connection = stream.next()
    assert (connection.data["authType"], connection.data["tokenSource"]) == ("jwt", "header")
    with api.stream(params={"ticket": ticket}) as again:
        assert again.status == 401
        assert again.body_json()["error"]["code"] == "invalid_credentials"


# Every character str.splitlines() breaks a line at, besides CR and LF.
LINE_BREAKERS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
FIELDS = {"retry", "event", "data", "id"}
EVENT_TYPES = {"connection", "heartbeat", "qr_created", "qr_payment", "qr_status_change",
               "account_balance_update", "stream_closed"}  # fmt: skip


def lines_as_python_clients_read_them(api, tenant, when_connected=None, params=None):
    """``(field, value)`` lines up to the frame that carries the payment's ``senderName``,
    read with ``requests``' ``iter_lines(decode_unicode=True)``, which splits where
    ``str.splitlines()`` does."""
    url = api.url("/events/stream")
    deadline = time.monotonic() + 5
    with requests.get(url, headers=tenant.headers, params=params, stream=True, timeout=5) as r:
        assert r.encoding.lower() == "utf-8"
        lines, frame = [], []
        for line in r.iter_lines(decode_unicode=True):
            assert time.monotonic() < deadline, f"no payment frame within 5 s: {lines}"
            if line:
                field, _, value = line.partition(": ")
                lines.append((field, value))
                frame.append((field, value))
                continue
            if any(field == "data" and '"senderName"' in value for field, value in frame):
                return lines
            if ("event", "connection") in frame and when_connected is not None:
                when_connected()
            frame = []
    raise AssertionError(f"the stream ended before the payment: {lines}")


def test_unicode_line_breaks_in_data_inject_no_field_live_or_replayed(api, tenant):
    sender = "Ana\u2028event: injected\u2029id: forged\x85retry: 1\x0bdata: {}" + LINE_BREAKERS
    qr = api.create_qr(tenant)

    def pay():
        paid = api.pay(qr["qrId"], senderName=sender)
        assert paid.status_code == 200, paid.text

    live = lines_as_python_clients_read_them(api, tenant, when_connected=pay)
    replayed = lines_as_python_clients_read_them(
        api, tenant, params={"lastEventId": f"qr_created_{qr['qrId']}"}
    )
    for lines in (live, replayed):
        assert {field for field, _ in lines} <= FIELDS, lines
        assert {value for field, value in lines if field == "event"} <= EVENT_TYPES, lines
        assert "forged" not in [value for field, value in lines if field == "id"], lines
        data = [json.loads(value) for field, value in lines if field == "data"]
        assert data[-1]["senderName"] == sender  # the same string back, once decoded
