"""examples/legacy_flask run as a reader of docs/INTEGRATION.md runs it: its own process
(``flask run``, threaded, no gevent) beside a live qrevents trusting its tokens, driven in
Chromium. A payment shows on its page, and its webhook receiver logs the verified event."""

import os
import subprocess
import time

import pytest
import requests

from tests.live import BIN, ROOT, Api, LiveServer, free_port
from tests.test_dashboard_browser import ARTIFACTS, browser, expect  # noqa: F401 (fixture)

EXAMPLE = ROOT / "examples" / "legacy_flask"
SECRET = "legacy-app-shared-secret-0123456789abcdef"
ISSUER = "http://tienda.example"
AUDIENCE = "qrevents"


@pytest.fixture
def deployment(tmp_path):
    """qrevents and the example app, set up as docs/INTEGRATION.md says."""
    app_port = free_port()
    app_origin = f"http://127.0.0.1:{app_port}"
    qrevents = LiveServer(
        tmp_path / "qrevents",
        f"sqlite:///{tmp_path / 'q.db'}",
        host_jwt_key=SECRET,
        host_jwt_issuer=ISSUER,
        host_jwt_audience=AUDIENCE,
        cors_origins=app_origin,
        webhook_poll_seconds=0.2,
        retry_ms=200,
    ).start()
    api = Api(qrevents.base)
    tenant = api.new_tenant()
    hook = api.post(
        "/webhooks",
        json={"url": f"{app_origin}/webhooks/qrevents", "events": ["qr_payment"]},
        headers={"Authorization": f"Bearer {tenant.jwt}"},
    )
    assert hook.status_code == 201, hook.text
    log_path = tmp_path / "legacy_flask.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QREVENTS_")}
    env.update(
        QREVENTS_URL=qrevents.base,
        QREVENTS_ACCOUNT_ID=str(tenant.account_id),
        HOST_JWT_SECRET=SECRET,
        HOST_JWT_ISSUER=ISSUER,
        HOST_JWT_AUDIENCE=AUDIENCE,
        QREVENTS_WEBHOOK_SECRET=hook.json()["data"]["secret"],
        SECRET_KEY="example-session-key",
        # As `pip install ./clients/python` would provide it.
        PYTHONPATH=str(ROOT / "clients" / "python"),
    )
    with open(log_path, "wb") as log:
        example = subprocess.Popen(
            [
                str(BIN / "flask"),
                "--app",
                "app",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(app_port),
            ],
            cwd=EXAMPLE,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_it_answers(app_origin + "/login", example, log_path)
        yield {
            "api": api,
            "tenant": tenant,
            "app": app_origin,
            "log": lambda: log_path.read_text(errors="replace"),
        }
    finally:
        example.terminate()
        example.wait(10)
        qrevents.stop()


def _wait_until_it_answers(url, process, log_path, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the example exited:\n{log_path.read_text()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the example did not answer:\n{log_path.read_text()}")


def test_the_example_shows_a_payment_live_and_verifies_its_webhook(browser, deployment):  # noqa: F811
    api, tenant = deployment["api"], deployment["tenant"]
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(deployment["app"] + "/")
        page.fill("[name=email]", "cajero@example.com")
        page.fill("[name=password]", "demo")
        page.click("button[type=submit]")
        expect(page.locator("#status")).to_have_text("En vivo")
        qr = api.create_qr(tenant, "42.50")
        paid = api.pay(qr["qrId"], "42.50", "TXN_LEGACY_1")
        assert paid.status_code == 200, paid.text
        row = page.locator('li.payment[data-transaction-id="TXN_LEGACY_1"]')
        expect(row).to_have_text("42.50 BOB de Juan Pérez (TXN_LEGACY_1)")
        deadline = time.monotonic() + 10
        while "webhook verified" not in deployment["log"]() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert '"id": "qr_payment_TXN_LEGACY_1", "type": "qr_payment"' in deployment["log"]()
        assert "webhook refused" not in deployment["log"]()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "legacy-flask-example.png", full_page=True)
    finally:
        context.close()


def test_the_examples_receiver_refuses_an_unsigned_webhook(deployment):
    forged = requests.post(
        deployment["app"] + "/webhooks/qrevents",
        data=b'{"id":"qr_payment_FAKE","type":"qr_payment","data":{}}',
        headers={"Content-Type": "application/json", "X-QrEvents-Signature": "t=1,v1=00"},
        timeout=5,
    )
    assert forged.status_code == 400
    assert "webhook refused" in deployment["log"]()
    assert "qr_payment_FAKE" not in deployment["log"]()


def test_only_the_configured_origin_may_read_the_stream_cross_origin(deployment):
    api, tenant = deployment["api"], deployment["tenant"]
    for origin, allowed in ((deployment["app"], deployment["app"]), ("http://evil.example", None)):
        headers = {**tenant.headers, "Origin": origin}
        with api.stream(headers=headers) as stream:
            assert stream.status == 200
            assert stream.headers.get("Access-Control-Allow-Origin") == allowed
