"""``/metrics``: Prometheus text for the admin key, counting what streams and callbacks did."""

import time

import gevent
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from qrevents.hub import AccountHub
from tests.conftest import fresh_database_url, redis_prefix
from tests.live import ADMIN_KEY, Api, LiveServer

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def scrape(api):
    """``{(sample name, frozenset(labels)): value}`` of one ``/metrics`` read."""
    response = api.get("/metrics", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0)


def scrape_once_streams_closed(api, timeout=5):
    """The server learns that a client left at its next write (a heartbeat, 0.2 s here)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(api)
        if not any(v for (name, _), v in samples.items() if name == "qrevents_open_streams"):
            return samples
        assert time.monotonic() < deadline, "streams still counted open"
        time.sleep(0.1)


def test_metrics_need_the_admin_key(api, tenant):
    assert api.get("/metrics").status_code == 401
    refused = api.get("/metrics", headers=tenant.headers)
    assert refused.status_code == 401
    assert refused.json()["success"] is False
    assert api.get("/metrics", headers=ADMIN).status_code == 200


def test_streams_events_frames_and_callbacks_are_counted(make_server):
    api = Api(make_server().base)
    tenant = api.new_tenant()
    jwt = {"Authorization": f"Bearer {tenant.jwt}"}
    with api.stream(tenant) as by_key, api.stream(headers=jwt) as by_jwt:
        by_key.next()
        by_jwt.next()
        opened = scrape(api)
        qr = api.create_qr(tenant, "10.00")
        assert api.pay(qr["qrId"], "10.00", "TXN_M1").status_code == 200
        assert api.pay(qr["qrId"], "10.00", "TXN_M1").json()["duplicate"] is True
        held = api.pay(qr["qrId"], "10.00", "TXN_M2")  # the QR is used: held for review
        assert held.json()["data"]["review"] is True
        # Unsigned, it is a trigger to ask the bank; without a transactionId, not even that.
        assert api.bank("/bank/payments", {"qrId": qr["qrId"]}, sign=False).status_code == 422
        by_key.take(6)
        by_jwt.take(6)
    after = scrape_once_streams_closed(api)

    assert value(opened, "qrevents_open_streams", auth_type="apikey") == 1
    assert value(opened, "qrevents_open_streams", auth_type="jwt") == 1
    assert value(after, "qrevents_open_streams", auth_type="apikey") == 0
    assert value(after, "qrevents_streams_closed_total", reason="client_disconnected") == 2
    assert value(after, "qrevents_events_written_total", type="qr_created") == 1
    assert value(after, "qrevents_events_written_total", type="qr_payment") == 2
    assert value(after, "qrevents_events_written_total", type="account_balance_update") == 2
    assert value(after, "qrevents_events_written_total", type="qr_status_change") == 1
    assert value(after, "qrevents_frames_delivered_total") == 12  # 6 events, 2 streams
    for outcome, count in {"credited": 1, "duplicate": 1, "held": 1, "refused": 1}.items():
        assert value(after, "qrevents_bank_callbacks_total", outcome=outcome) == count
    assert value(after, "qrevents_commit_to_write_seconds_count") >= 2
    assert value(after, "qrevents_commit_to_write_seconds_bucket", le="+Inf") >= 2


def test_replay_and_close_reasons_are_counted(make_server):
    api = Api(make_server().base)
    tenant = api.new_tenant()
    first = api.create_qr(tenant)
    api.create_qr(tenant)
    api.create_qr(tenant)
    key = api.admin(f"/admin/accounts/{tenant.account_id}/api-keys", {"name": "revoke me"})
    headers = {"Authorization": f"Bearer {key['key']}"}
    with api.stream(headers=headers, params={"lastEventId": f"qr_created_{first['qrId']}"}) as s:
        assert s.next().data["replayed"] == 2
        s.take(2)
        revoked = api.delete(
            f"/api-keys/{key['id']}", headers={"Authorization": f"Bearer {tenant.jwt}"}
        )
        assert revoked.status_code == 200
        assert s.until("stream_closed")[-1].data["reason"] == "key_revoked"
    samples = scrape_once_streams_closed(api)
    assert value(samples, "qrevents_events_replayed_total") == 2
    assert value(samples, "qrevents_streams_closed_total", reason="key_revoked") == 1


def test_a_repaired_gap_is_counted_once():
    from qrevents.events import EventRecord

    logged = {
        seq: EventRecord(1, seq, "qr_created", f"e{seq}", "{}", frame=f"frame {seq}\n\n".encode())
        for seq in (1, 2, 3)
    }
    hub = AccountHub(
        load_seqs=lambda ids: {1: 0},
        load_events=lambda account, after, upto: [logged[s] for s in range(after + 1, upto + 1)],
        queue_size=10,
    )
    before = REGISTRY.get_sample_value("qrevents_gaps_repaired_total")
    sub = hub.subscribe(1)
    hub.deliver(1, [logged[3]])  # 1 and 2 were never announced
    gevent.sleep(0.01)
    assert [frame.split()[1] for frame in sub.take()] == [b"1", b"2", b"3"]
    assert REGISTRY.get_sample_value("qrevents_gaps_repaired_total") == before + 1


def test_several_workers_report_the_sum_of_their_counts(redis_url, tmp_path):
    live = LiveServer(
        tmp_path,
        fresh_database_url("postgres", tmp_path),
        workers=2,
        redis_url=redis_url,
        redis_prefix=redis_prefix(),
    )
    live.env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    live.start()
    try:
        assert len(live.worker_pids()) == 2
        tenant = Api(live.base).new_tenant()
        created = 0
        while len(live.served_by("POST", "/qr")) < 2:
            assert created < 100, "one worker served every request"
            Api(live.base).create_qr(tenant)  # a new connection each time
            created += 1
        reads = []
        while len(live.served_by("GET", "/metrics")) < 2:
            assert len(reads) < 100, "one worker answered every scrape"
            samples = scrape(Api(live.base))
            reads.append(value(samples, "qrevents_events_written_total", type="qr_created"))
    finally:
        live.stop()
    assert reads == [created] * len(reads)
