"""Webhooks across workers: one deliverer per endpoint (the lease), every event in order with
no two deliveries to one endpoint at once, and nothing lost when a worker is SIGKILLed
mid-delivery."""

import os
import signal
import threading
import time

from tests.conftest import fresh_database_url, redis_prefix
from tests.live import Api, LiveServer
from tests.test_webhooks import FAST, jwt_headers, register, written_log


def pay_many(api, tenant, count, threads=4):
    """``count`` single-use QRs paid from several threads (so through both workers)."""
    errors = []

    def run(share):
        client = Api(api.base)
        for _ in range(share):
            qr = client.create_qr(tenant)
            response = client.pay(qr["qrId"])
            if response.status_code != 200:
                errors.append(response.text)

    workers = [threading.Thread(target=run, args=(count // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not errors, errors
    return count // threads * threads


def test_two_workers_deliver_every_event_to_every_endpoint_in_order_one_at_a_time(
    tmp_path, redis_url, receiver
):
    url = fresh_database_url("postgres", tmp_path)
    live = LiveServer(
        tmp_path, url, workers=2, redis_url=redis_url, redis_prefix=redis_prefix(), **FAST
    ).start()
    try:
        api = Api(live.base)
        tenant = api.new_tenant()
        paths = [f"/e{i}" for i in range(3)]
        for path in paths:
            receiver.behave(path, delay=0.01)  # widens the window an overlap would show in
            register(api, tenant, receiver.url(path))
        paid = pay_many(api, tenant, 24)
        expected = paid * 4  # qr_created, qr_payment, account_balance_update, qr_status_change
        for path in paths:
            got = receiver.wait_for(expected, path, timeout=30)
            seqs = [r.json["seq"] for r in receiver.at(path)]
            assert seqs == list(range(1, expected + 1)), path  # each once, in order
        assert receiver.overlaps == []
        # the events were committed on both workers
        assert len(live.served_by("POST", "/bank/payments")) == 2
        assert len(got) == expected
    finally:
        live.stop()


def test_a_worker_sigkilled_mid_delivery_loses_no_event(make_server, receiver):
    live = make_server(**FAST)
    api = Api(live.base)
    tenant = api.new_tenant()
    receiver.behave("/hook", delay=0.5)
    register(api, tenant, receiver.url("/hook"), events=["qr_created"])
    qrs = [api.create_qr(tenant) for _ in range(4)]
    deadline = time.monotonic() + 5
    while not receiver.at("/hook") and time.monotonic() < deadline:
        time.sleep(0.01)
    (worker,) = live.worker_pids()
    os.kill(worker, signal.SIGKILL)  # the first delivery is in flight
    wanted = {qr["qrId"] for qr in qrs}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        accepted = {r.json["data"]["qrId"] for r in receiver.at("/hook") if r.status == 200}
        if accepted == wanted:
            break
        time.sleep(0.05)
    assert accepted == wanted  # at least once each (the one in flight may come twice)
    first_seen = []
    for received in receiver.at("/hook"):
        if received.json["data"]["qrId"] not in first_seen:
            first_seen.append(received.json["data"]["qrId"])
    assert first_seen == [qr["qrId"] for qr in qrs]  # first seen in order
    assert live.worker_pids() != [worker]
    shown = api.get("/webhooks", headers=jwt_headers(tenant)).json()["data"]["items"][0]
    assert shown["enabled"] and shown["lastError"] is None
    # The server's own log: an acknowledged attempt for every event, the cut one included.
    log = written_log(api, tenant, shown["id"], 4)
    assert {d["eventId"] for d in log if d["succeeded"]} == {f"qr_created_{q}" for q in wanted}
