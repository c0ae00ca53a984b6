"""QRs: idempotent creation, cancellation, bank status syncs, and the expiry sweep."""

import time
from datetime import UTC, datetime, timedelta

from tests.live import Api


def test_repeated_creation_with_the_same_transaction_id_returns_the_first_qr(api, tenant):
    with api.stream(tenant) as stream:
        stream.next()
        first = api.post(
            "/qr",
            json={"amount": 5, "currency": "BOB", "description": "x", "transactionId": "ORDER-1"},
            headers=tenant.headers,
        )
        again = api.post(
            "/qr",
            json={"amount": 5, "currency": "BOB", "description": "x", "transactionId": "ORDER-1"},
            headers=tenant.headers,
        )
        (created,) = stream.take(1)
        assert stream.quiet_for(0.3) == []
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["data"]["qrId"] == again.json()["data"]["qrId"] == created.data["qrId"]
    conflict = api.post(
        "/qr",
        json={"amount": 6, "currency": "BOB", "description": "x", "transactionId": "ORDER-1"},
        headers=tenant.headers,
    )
    assert conflict.status_code == 409


def test_cancelling_an_active_qr_announces_it_once(api, tenant):
    qr = api.create_qr(tenant)
    with api.stream(tenant) as stream:
        stream.next()
        cancelled = api.post(f"/qr/{qr['qrId']}/cancel", headers=tenant.headers)
        (event,) = stream.take(1)
        again = api.post(f"/qr/{qr['qrId']}/cancel", headers=tenant.headers)
        assert stream.quiet_for(0.3) == []
    assert cancelled.json()["data"]["status"] == "cancelled"
    assert (event.data["previousStatus"], event.data["newStatus"]) == ("active", "cancelled")
    assert event.data["syncSource"] == "user"
    assert again.status_code == 409


def test_another_accounts_qr_is_not_found(api, tenant):
    other = api.new_tenant()
    qr = api.create_qr(other)
    assert api.get(f"/qr/{qr['qrId']}", headers=tenant.headers).status_code == 404
    assert api.post(f"/qr/{qr['qrId']}/cancel", headers=tenant.headers).status_code == 404


def test_bank_status_sync_changes_status_once_and_refuses_impossible_moves(api, tenant):
    qr = api.create_qr(tenant)
    with api.stream(tenant) as stream:
        stream.next()
        done = api.bank("/bank/qr-status", {"qrId": qr["qrId"], "status": "completed"})
        (event,) = stream.take(1)
        same = api.bank("/bank/qr-status", {"qrId": qr["qrId"], "status": "completed"})
        impossible = api.bank("/bank/qr-status", {"qrId": qr["qrId"], "status": "cancelled"})
        assert stream.quiet_for(0.3) == []
    assert done.status_code == 200 and done.json()["responseCode"] == 0
    assert event.data["syncSource"] == "bank_api" and event.data["newStatus"] == "completed"
    assert same.status_code == 200 and same.json()["changed"] is False
    assert impossible.status_code == 409


def test_two_status_changes_in_one_millisecond_keep_distinct_ids(api, tenant):
    qr = api.create_qr(tenant, "10.00")
    with api.stream(tenant) as stream:
        stream.next()
        api.pay(qr["qrId"], "10.00")
        api.bank("/bank/qr-status", {"qrId": qr["qrId"], "status": "completed"})
        events = stream.take(4)
    changes = [e for e in events if e.event == "qr_status_change"]
    assert [c.data["newStatus"] for c in changes] == ["used", "completed"]
    assert changes[0].id != changes[1].id
    first_ms, second_ms = (int(c.id.rsplit("_", 1)[1]) for c in changes)
    assert second_ms > first_ms


def test_overdue_qrs_expire_by_the_sweep(make_server):
    server = make_server(expiry_sweep_seconds=0.2)
    api = Api(server.base)
    tenant = api.new_tenant()
    due = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    qr = api.create_qr(tenant, dueDate=due)
    with api.stream(tenant) as stream:
        stream.next()
        started = time.monotonic()
        (event,) = stream.take(1, timeout=5)
    assert event.event == "qr_status_change"
    assert (event.data["newStatus"], event.data["syncSource"]) == ("expired", "scheduler")
    assert time.monotonic() - started < 3
    listed = api.get("/qr", params={"status": "expired"}, headers=tenant.headers).json()["data"]
    assert [q["qrId"] for q in listed["items"]] == [qr["qrId"]]


def test_a_bare_due_date_means_the_end_of_that_day_in_la_paz(api, tenant):
    qr = api.create_qr(tenant, dueDate="2030-01-15")
    assert qr["dueDate"] == "2030-01-16T03:59:59.999Z"


def test_a_due_date_and_time_without_an_offset_is_la_paz_time(api, tenant):
    assert api.create_qr(tenant, dueDate="2030-01-15T18:00:00")["dueDate"] == (
        "2030-01-15T22:00:00.000Z"
    )
    assert api.create_qr(tenant, dueDate="2030-01-15T18:00:00Z")["dueDate"] == (
        "2030-01-15T18:00:00.000Z"
    )


def test_default_due_date_is_a_day_after_creation(api, tenant):
    qr = api.create_qr(tenant)
    created = datetime.fromisoformat(qr["createdAt"])
    due = datetime.fromisoformat(qr["dueDate"])
    assert due - created == timedelta(hours=24)


def test_qr_list_filters_by_status_and_pages_newest_first(api, tenant):
    ids = [api.create_qr(tenant)["qrId"] for _ in range(3)]
    api.post(f"/qr/{ids[0]}/cancel", headers=tenant.headers)
    page = api.get("/qr", params={"limit": 2}, headers=tenant.headers).json()["data"]
    assert [q["qrId"] for q in page["items"]] == [ids[2], ids[1]]
    rest = api.get("/qr", params={"cursor": page["nextCursor"]}, headers=tenant.headers).json()
    assert [q["qrId"] for q in rest["data"]["items"]] == [ids[0]]
    cancelled = api.get("/qr", params={"status": "cancelled"}, headers=tenant.headers).json()
    assert [q["qrId"] for q in cancelled["data"]["items"]] == [ids[0]]
