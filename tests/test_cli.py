"""The command line a newcomer uses: the demo bootstrap and the signed bank payment."""

import re
import subprocess

from tests.live import BIN, ROOT, Api, Tenant


def flask(server, *args):
    return subprocess.run(
        [str(BIN / "flask"), "--app", "app", *args],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_demo_prints_working_credentials_and_reuses_them(make_server):
    server = make_server()
    first = flask(server, "demo")
    assert first.returncode == 0, first.stderr
    key = re.search(r"API key:\s+(qrk_\S+)", first.stdout).group(1)
    assert f"curl -N -H 'Authorization: Bearer {key}'" in first.stdout
    assert "bank-pay" in first.stdout and "/dashboard" in first.stdout
    again = flask(server, "demo")
    assert re.search(r"API key:\s+(qrk_\S+)", again.stdout).group(1) == key
    me = Api(server.base).get("/accounts/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200


def test_bank_pay_command_sends_a_signed_payment_the_stream_shows(make_server):
    server = make_server()
    api = Api(server.base)
    tenant: Tenant = api.new_tenant()
    qr = api.create_qr(tenant, "100.50")
    with api.stream(tenant) as stream:
        stream.next()
        paid = flask(server, "bank-pay", qr["qrId"], "100.50")
        events = stream.take(3)
    assert paid.returncode == 0, paid.stderr
    assert [e.event for e in events] == ["qr_payment", "account_balance_update", "qr_status_change"]
    assert events[1].data["newAvailableBalance"] == 100.5


def test_expire_command_runs_in_another_process_and_streams_still_hear_of_it(make_server):
    from datetime import UTC, datetime, timedelta

    server = make_server(expiry_sweep_seconds=3600)  # only the command may expire it
    api = Api(server.base)
    tenant = api.new_tenant()
    due = (datetime.now(UTC) + timedelta(seconds=0.6)).isoformat()
    qr = api.create_qr(tenant, dueDate=due)
    with api.stream(tenant) as stream:
        stream.next()
        import time

        time.sleep(0.7)
        result = flask(server, "expire-qrs")
        (event,) = stream.take(1, timeout=5)
    assert "expired 1 QRs" in result.stdout
    assert event.data["qrId"] == qr["qrId"] and event.data["syncSource"] == "scheduler"
