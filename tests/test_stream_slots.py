"""A stream's slot (the per-account stream limit) is freed when its client can no longer be
served.

Readers that stop reading are cut off once a write cannot complete within
``QREVENTS_STREAM_WRITE_TIMEOUT_SECONDS``, or at once when their key is revoked or their JWT
expires; clients that close their connection free their slot within a second, whatever the
heartbeat interval.
"""

import socket
import struct
import time

from tests.live import ADMIN_KEY, Api
from tests.test_multiworker import wait_for

STUCK = 5  # stalled readers, as many as the account may hold


def stuck_reader(api, headers):
    """A stream that takes its connection event and then reads nothing, through a small
    receive window: a few payments fill its socket."""
    stream = api.stream(headers=headers, receive_buffer=4096)
    assert stream.next().event == "connection"
    return stream


def fill_sockets(api, tenant):
    """40 payments, 80 events (~ 40 KB): more than a stalled reader's kernel buffers hold."""
    qr = api.create_qr(tenant, singleUse=False)
    for _ in range(40):
        assert api.pay(qr["qrId"]).status_code == 200


def open_streams(api, account_id):
    stats = api.get("/events/stats", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    return stats.json()["data"]["subscriptionsByAccount"].get(str(account_id), 0)


def admitted(api, tenant):
    """A new stream of the account opens (its first event is ``connection``)."""
    with api.stream(tenant, timeout=2) as stream:
        return stream.status == 200 and getattr(stream.next(), "event", None) == "connection"


def ended_by_server(stream, timeout):
    """The server closed the connection: what it had sent is read, then EOF or a reset."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if stream.next(timeout=max(0.01, deadline - time.monotonic())) is None:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def test_readers_that_stop_reading_are_closed_after_the_write_timeout(make_server):
    server = make_server(
        stream_send_buffer=4096, stream_write_timeout_seconds=1, max_streams_per_account=STUCK
    )
    api = Api(server.base)
    tenant = api.new_tenant()
    readers = [stuck_reader(api, tenant.headers) for _ in range(STUCK)]
    try:
        fill_sockets(api, tenant)
        filled = time.monotonic()
        # The bound: one write timeout after a write stalls (and the last stalled at the
        # latest when the payments ended), plus scheduling slack.
        assert wait_for(lambda: open_streams(api, tenant.account_id) == 0, timeout=3)
        freed = time.monotonic() - filled
        assert admitted(api, tenant)
        assert all(ended_by_server(reader, timeout=3) for reader in readers)
    finally:
        for reader in readers:
            reader.close()
    assert freed < 1 + 1.5
    reasons = [e["reason"] for e in server.json_log() if e["event"] == "stream_close"]
    assert reasons.count("write_timeout") == STUCK


def test_a_revoked_key_ends_its_stalled_streams_without_waiting_for_the_write_timeout(
    make_server,
):
    api = Api(make_server(stream_send_buffer=4096, max_streams_per_account=STUCK).base)
    tenant = api.new_tenant()
    kiosk = api.admin(f"/admin/accounts/{tenant.account_id}/api-keys", {"name": "kiosk"})
    readers = [stuck_reader(api, {"Authorization": f"Bearer {kiosk['key']}"}) for _ in range(3)]
    try:
        fill_sockets(api, tenant)
        revoked_at = time.monotonic()
        user = {"Authorization": f"Bearer {tenant.jwt}"}  # key management needs a user's JWT
        assert api.delete(f"/api-keys/{kiosk['id']}", headers=user).status_code == 200
        # The write timeout is the default 10 s: only the revocation can end them this soon.
        assert wait_for(lambda: open_streams(api, tenant.account_id) == 0, timeout=1.5)
        freed = time.monotonic() - revoked_at
    finally:
        for reader in readers:
            reader.close()
    assert freed < 1.0


def test_an_expiring_jwt_ends_its_stalled_stream_at_its_exp(make_server):
    # Long enough for the sockets to fill first on a loaded machine; the bound stays 1 s.
    api = Api(make_server(stream_send_buffer=4096, jwt_expires_seconds=8).base)
    tenant = api.new_tenant()
    issued = time.monotonic()  # new_tenant logs in last: the JWT's exp is 8 s from here
    reader = stuck_reader(api, {"Authorization": f"Bearer {tenant.jwt}"})
    try:
        fill_sockets(api, tenant)
        assert open_streams(api, tenant.account_id) == 1
        assert wait_for(lambda: open_streams(api, tenant.account_id) == 0, timeout=10)
        ended = time.monotonic() - issued
    finally:
        reader.close()
    # exp is a whole second (up to 1 s before login + 8 s), the login a moment before `issued`.
    assert 8 - 2.0 < ended < 8 + 1.0


def reset(stream):
    """Close the client's end with an RST instead of a FIN."""
    stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.close()


def test_streams_closed_by_their_clients_free_their_slots_within_a_second(make_server):
    api = Api(make_server(max_streams_per_account=3, heartbeat_seconds=30).base)
    tenant = api.new_tenant()
    streams = [api.stream(tenant) for _ in range(3)]
    for stream in streams:
        assert stream.next().event == "connection"
    assert not admitted(api, tenant)
    streams[0].close()  # FIN
    streams[1].close()
    reset(streams[2])  # RST
    closed = time.monotonic()
    assert wait_for(lambda: open_streams(api, tenant.account_id) == 0, timeout=1.0)
    freed = time.monotonic() - closed
    assert admitted(api, tenant)
    assert freed < 1.0
