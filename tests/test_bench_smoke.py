"""The benchmark harness, run tiny against a real qrevents server and against each yardstick
(the limit, nchan, sse-starlette), so it cannot rot.

A few streams, a few events of every scenario: everything delivered, nothing twice.
"""

import asyncio
import re
import socket
import time

import pytest

from bench.client import HttpClient, http_request
from bench.scenarios import Repetition, Scale
from bench.servers import (
    LimitServer,
    NchanServer,
    QreventsServer,
    SseStarletteServer,
    nchan_missing,
)
from tests.conftest import missing_service

TINY = Scale(
    levels=(4, 6),
    fanout_streams=4,
    fanout_events=2,
    saturation_events=3,
    accounts=3,
    per_account=2,
    payment_rate=20,
    payment_seconds=0.5,
    sweep_rates=(20,),
    sweep_seconds=0.5,
    storm_live_rate=20,
    ramp_rate=200,
    in_flight=8,
)


@pytest.fixture
def qrevents_server(tmp_path):
    server = QreventsServer(tmp_path, "qrevents-smoke")
    server.start()
    yield server
    server.stop()


async def run_tiny(server):
    http = HttpClient(server.host, server.port, max_connections=4)
    channels = await server.setup(http, TINY.accounts)
    http.close()
    return await Repetition(server, channels, TINY, lambda message: None).run()


def assert_every_event_once(result):
    assert result["hold"]["6"]["held"] == 6
    assert result["hold"]["6"]["first_event_p50_ms"] is not None
    assert result["hold"]["6"]["first_event_alone_p50_ms"] is not None
    for phase in ("fanout", "saturation", "payments", "storm"):
        assert result[phase]["lost"] == 0, (phase, result[phase])
        assert result[phase]["duplicates"] == 0, (phase, result[phase])
    assert result["fanout"]["deliveries"] == 4 * 2
    assert result["saturation"]["deliveries"] == 4 * 3
    assert result["payments"]["deliveries"] == result["payments"]["accepted"] * 2
    assert result["payments"]["errors"] == 0
    assert result["storm"]["missed_events"] == 3
    assert result["storm"]["all_resumed_s"] is not None
    assert result["publish_errors"] == 0


def test_bench_harness_counts_every_event_once(qrevents_server):
    assert_every_event_once(asyncio.run(run_tiny(qrevents_server)))


YARDSTICKS = {"limit": LimitServer, "nchan": NchanServer, "sse-starlette": SseStarletteServer}


@pytest.mark.parametrize("name", sorted(YARDSTICKS))
def test_yardstick_gets_every_event_once(name, tmp_path):
    if name == "nchan" and nchan_missing():
        missing_service(f"{nchan_missing()} (.ci/run installs it)")
    server = YARDSTICKS[name](tmp_path)
    server.start()
    try:
        assert_every_event_once(asyncio.run(run_tiny(server)))
    finally:
        server.stop()


def read_until(sock, pattern, timeout=10):
    data, deadline = b"", time.monotonic() + timeout
    sock.settimeout(timeout)
    while not re.search(pattern, data) and time.monotonic() < deadline:
        data += sock.recv(1 << 20)
    return data


def test_limit_server_catches_up_a_slow_reader_in_order(tmp_path):
    """A stream whose socket fills up gets the rest from its writer greenlet: nothing lost."""
    server = LimitServer(tmp_path)
    server.start()
    try:
        stream = socket.socket()
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few events
        stream.connect((server.host, server.port))
        stream.sendall(server.stream_request("slow"))
        read_until(stream, rb"connected")
        events, body = 300, b"x" * 16384
        with socket.create_connection((server.host, server.port)) as publisher:
            for _ in range(events):
                publisher.sendall(http_request("POST", "/publish?channel=slow&type=big", body))
                read_until(publisher, rb"ok$")
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # a fast drain now
        data = read_until(stream, b"id: %d\n" % events + rb"event: big\ndata: x{16384}\n\n", 30)
        stream.close()
    finally:
        server.stop()
    frames = re.findall(rb"id: (\d+)\nevent: big\ndata: (x+)\n\n", data)
    assert [int(n) for n, _ in frames] == list(range(1, events + 1))
    assert {len(payload) for _, payload in frames} == {16384}
