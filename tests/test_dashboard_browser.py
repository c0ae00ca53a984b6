"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real
gunicorn server: what a merchant who keeps it open all day sees.

SQLite only: what is tested here is the page and qrevents.js; the server's backends have
their own tests. Screenshots go to ``test-artifacts/`` for a reviewer.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.live import Api, LiveServer, free_port

CHROMIUM = "/usr/bin/chromium"
# As root, Chromium needs no sandbox; the rest keeps it off a network it cannot reach.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
STREAM_URL = re.compile(r"/events/stream")
# Fast server settings: heartbeats every 0.2 s, clients told to retry after 0.2 s.
FAST = {"heartbeat_seconds": 0.2, "retry_ms": 200}
LIVE_MS = 1000  # a payment must show within one second


def require_browser():
    """Playwright and Debian's Chromium, or skip with the reason (fail in CI)."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "playwright is not installed (pip install -r requirements.txt)"
    if problem is None and not (shutil.which("chromium") or Path(CHROMIUM).exists()):
        problem = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if problem:
        if os.environ.get("QREVENTS_REQUIRE_ALL_BACKENDS") == "1":
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def dashboard_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard")
    live = LiveServer(folder, f"sqlite:///{folder / 'qrevents.db'}", **FAST).start()
    yield live
    live.stop()


@pytest.fixture
def page(browser, request):
    """A fresh tab (own sessionStorage) that records page errors and saves a last screenshot."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="es-BO")
    tab = context.new_page()
    tab.errors = []
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    yield tab
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=ARTIFACTS / f"{request.node.name}-end.png", full_page=True)
    context.close()


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"dashboard-{name}.png", full_page=True)


def sign_in(page, base, tenant, *, api_key=False):
    page.goto(base + "/dashboard")
    if api_key:
        page.fill("#apikey-form [name=apiKey]", tenant.api_key)
        page.click("#apikey-form button")
    else:
        page.fill("#login-form [name=email]", tenant.email)
        page.fill("#login-form [name=password]", tenant.password)
        page.click("#login-form button")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("#balance")).to_have_text(re.compile(r"^Bs "))


def feed_row(page, transaction_id):
    return page.locator(f'#payment-feed li[data-transaction-id="{transaction_id}"]')


def qr_row(page, qr_id):
    return page.locator(f'#qr-list li[data-qr-id="{qr_id}"]')


def create_qr_on_page(
    page, amount, description, *, single_use=True, modify_amount=False, due_date=""
):
    page.fill("#qr-form [name=amount]", amount)
    page.fill("#qr-form [name=description]", description)
    page.fill("#qr-form [name=dueDate]", due_date)
    page.set_checked("#qr-form [name=singleUse]", single_use)
    page.set_checked("#qr-form [name=modifyAmount]", modify_amount)
    page.click("#qr-form button[type=submit]:not([name=charge])")
    row = page.locator("#qr-list li", has_text=description)
    expect(row).to_have_count(1)
    return row.get_attribute("data-qr-id")


def client_stats(page):
    return page.evaluate("() => ({...window.qreventsDashboard.client.stats})")


def test_payment_shows_in_feed_and_balance_within_a_second(page, dashboard_server):
    api = Api(dashboard_server.base)
    tenant = api.new_tenant()
    page.add_init_script(
        """window.__shifts = [];
        new PerformanceObserver((list) => {
          for (const e of list.getEntries()) if (!e.hadRecentInput) window.__shifts.push(e.value);
        }).observe({type: 'layout-shift', buffered: true});"""
    )
    sign_in(page, dashboard_server.base, tenant)
    expect(page.locator("#balance")).to_have_text("Bs 0,00")
    expect(page.locator("#last-heartbeat")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))

    qr_id = create_qr_on_page(page, "1.100,50", "Venta de mostrador", due_date="31/12/2030")
    row = qr_row(page, qr_id)
    expect(row.locator(".status")).to_have_attribute("data-status", "active")
    expect(row).to_contain_text("vence 31/12/2030, 23:59")  # a date: the end of that day, La Paz
    expect(row.locator("img.qr-image")).to_have_attribute("src", re.compile(r"^blob:"))
    assert row.locator("img.qr-image").evaluate("img => img.complete && img.naturalWidth > 0")
    box = row.locator("img.qr-image").bounding_box()
    assert box["width"] >= 240 and box["height"] >= 240, box  # a phone scans it off the screen
    shot(page, "qr-created")
    row.locator("img.qr-image").click()  # charge mode: enlarged, to scan from further away
    zoom = page.locator("#charge-image")
    expect(zoom).to_be_visible()
    assert zoom.bounding_box()["width"] > box["width"]
    page.click("#charge-close")
    expect(page.locator("#charge")).to_be_hidden()

    page.evaluate("() => { window.__shifts.length = 0; }")
    paid = api.pay(qr_id, "1100.50")
    assert paid.status_code == 200, paid.text
    transaction_id = paid.json()["data"]["transactionId"]
    expect(feed_row(page, transaction_id)).to_have_count(1, timeout=LIVE_MS)
    expect(page.locator("#balance")).to_have_text("Bs 1.100,50", timeout=LIVE_MS)
    expect(page.locator("#available")).to_have_text("Bs 1.100,50", timeout=LIVE_MS)
    expect(page.locator("#toasts .toast")).to_contain_text("Bs 1.100,50 de Juan Pérez")
    expect(row.locator(".status")).to_have_attribute("data-status", "used")
    shot(page, "payment-received")

    # A payment to a used QR is held for review: balance up, available not, a Release button.
    held = api.pay(qr_id, "50")
    held_id = held.json()["data"]["transactionId"]
    held_row = page.locator(f'#held-list li[data-transaction-id="{held_id}"]')
    expect(held_row).to_have_count(1, timeout=LIVE_MS)
    expect(page.locator("#balance")).to_have_text("Bs 1.150,50")
    expect(page.locator("#available")).to_have_text("Bs 1.100,50")
    expect(page.locator("#held-total")).to_have_text("Bs 50,00")
    expect(page.locator("#toasts .toast.review")).to_have_count(1)
    shifts = page.evaluate("() => window.__shifts.reduce((a, b) => a + b, 0)")
    # Layout Instability API score of what the events moved; lists that grew with each
    # payment (instead of scrolling inside a reserved box) already score 0.005 here.
    assert shifts < 0.002, f"events moved the layout: cumulative shift {shifts}"
    shot(page, "payment-held")

    held_row.locator("button.release").click()
    expect(held_row).to_have_count(0)
    expect(page.locator("#available")).to_have_text("Bs 1.150,50")
    expect(feed_row(page, held_id).locator(".tag.released")).to_have_count(1)
    assert page.errors == []


def test_qr_created_elsewhere_and_its_cancellation_arrive_live(page, dashboard_server):
    api = Api(dashboard_server.base)
    tenant = api.new_tenant()
    sign_in(page, dashboard_server.base, tenant)
    qr = api.create_qr(tenant, "75.25", description="Creado por la API")
    row = qr_row(page, qr["qrId"])
    expect(row).to_have_count(1, timeout=LIVE_MS)
    expect(row).to_contain_text("Bs 75,25")
    row.locator("button.cancel").click()
    expect(row.locator(".status")).to_have_attribute("data-status", "cancelled")
    expect(row.locator("button.cancel")).to_be_hidden()
    assert page.errors == []


def test_events_sent_while_the_server_was_down_appear_exactly_once(browser, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'qrevents.db'}"
    port = free_port()
    first = LiveServer(tmp_path / "first", database_url, port=port, **FAST).start()
    second = LiveServer(tmp_path / "second", database_url, port=port, **FAST)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    streams = []
    page.on("request", lambda req: streams.append(req) if STREAM_URL.search(req.url) else None)
    try:
        api = Api(first.base)
        tenant = api.new_tenant()
        sign_in(page, first.base, tenant)
        qr_id = create_qr_on_page(page, "25", "Cuota mensual", single_use=False, modify_amount=True)
        before = api.pay(qr_id, "25").json()["data"]["transactionId"]
        expect(feed_row(page, before)).to_have_count(1, timeout=LIVE_MS)

        # The server goes away: the page says so and keeps trying against a closed port.
        first.stop()
        expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        shot(page, "reconnecting")

        # While the page cannot get through, the server comes back and events happen.
        page.route(STREAM_URL, lambda route: route.abort())
        second.start()
        missed = [
            api.pay(qr_id, amount).json()["data"]["transactionId"] for amount in ("10", "5.5")
        ]
        other = api.create_qr(tenant, "9.90", description="Creado sin conexión")
        api.post(f"/qr/{other['qrId']}/cancel", headers=tenant.headers)
        expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        for transaction_id in missed:
            expect(feed_row(page, transaction_id)).to_have_count(0)

        # The network is back: the page resumes from the last event it saw.
        page.unroute(STREAM_URL)
        page.evaluate("() => window.dispatchEvent(new Event('online'))")
        expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
        for transaction_id in missed:
            expect(feed_row(page, transaction_id)).to_have_count(1)
        expect(page.locator("#balance")).to_have_text("Bs 40,50")
        expect(page.locator("#available")).to_have_text("Bs 40,50")
        expect(qr_row(page, other["qrId"]).locator(".status")).to_have_attribute(
            "data-status", "cancelled"
        )
        page.wait_for_timeout(500)  # anything repeated would have arrived by now
        assert page.locator("#payment-feed li").count() == 3
        assert page.locator("#qr-list li").count() == 2
        stats = client_stats(page)
        assert stats["duplicatesDropped"] == 0
        assert stats["replayed"] == 6  # 2 payments and their balance updates, a QR, its cancel
        resumed_from = streams[-1].all_headers().get("last-event-id", "")
        assert resumed_from.startswith("balance_update_"), resumed_from
        shot(page, "resumed-after-restart")
        assert errors == []
    finally:
        context.close()
        first.stop()
        second.stop()


def test_resume_refused_reloads_state_over_rest(page, dashboard_server):
    api = Api(dashboard_server.base)
    tenant = api.new_tenant()
    sign_in(page, dashboard_server.base, tenant)
    qr = api.create_qr(tenant, "30", singleUse=False)
    expect(qr_row(page, qr["qrId"])).to_have_count(1, timeout=LIVE_MS)

    page.route(STREAM_URL, lambda route: route.abort())
    page.evaluate("() => window.qreventsDashboard.client.closeCurrent()")
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    missed = api.pay(qr["qrId"], "30").json()["data"]["transactionId"]
    snapshots = []
    page.on("request", lambda req: snapshots.append(req.url) if "/accounts/me" in req.url else None)

    # The server no longer knows where the page left off (e.g. past retention).
    page.unroute(STREAM_URL)

    def unknown_resume_point(route):
        route.continue_(headers={**route.request.headers, "last-event-id": "qr_created_gone"})

    page.route(STREAM_URL, unknown_resume_point)
    page.evaluate("() => window.dispatchEvent(new Event('online'))")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(feed_row(page, missed)).to_have_count(1)
    expect(page.locator("#balance")).to_have_text("Bs 30,00")
    assert snapshots, "the page did not reload its state over REST"
    assert page.locator("#payment-feed li").count() == 1
    assert page.errors == []


def test_revoked_api_key_signs_the_page_out_for_good(page, dashboard_server):
    api = Api(dashboard_server.base)
    tenant = api.new_tenant()
    sign_in(page, dashboard_server.base, tenant, api_key=True)
    assert page.evaluate("() => sessionStorage.length") == 1
    streams = []
    page.on("request", lambda req: streams.append(req.url) if STREAM_URL.search(req.url) else None)

    revoked = api.delete(
        f"/api-keys/{tenant.api_key_id}", headers={"Authorization": f"Bearer {tenant.jwt}"}
    )
    assert revoked.status_code == 200, revoked.text
    expect(page.locator("#connection")).to_have_attribute("data-state", "signed_out")
    expect(page.locator("#connection-label")).to_have_text("Sesión cerrada")
    expect(page.locator("#signin-message")).to_contain_text("API key fue revocada")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()
    shot(page, "signed-out")
    page.wait_for_timeout(1500)
    assert streams == [], "a signed-out page must stop reconnecting"
    assert page.evaluate("() => sessionStorage.length") == 0
    assert page.errors == []


def test_phone_width_shows_everything_without_sideways_scrolling(browser, dashboard_server):
    api = Api(dashboard_server.base)
    tenant = api.new_tenant()
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True
    )
    page = context.new_page()
    try:
        sign_in(page, dashboard_server.base, tenant)
        qr = api.create_qr(tenant, "99999999.99", description="El monto más grande posible")
        api.pay(qr["qrId"], "99999999.99")
        expect(page.locator("#balance")).to_have_text("Bs 99.999.999,99", timeout=LIVE_MS)
        page.wait_for_timeout(300)
        overflow = page.evaluate(
            """() => ({
              page: document.documentElement.scrollWidth - window.innerWidth,
              amounts: [...document.querySelectorAll('.amount, .row-amount')]
                .filter((el) => el.scrollWidth > el.clientWidth)
                .map((el) => el.id || el.textContent),
            })"""
        )
        shot(page, "phone")
        assert overflow == {"page": 0, "amounts": []}
    finally:
        context.close()


def test_sign_in_with_a_wrong_password_stays_signed_out(page, dashboard_server):
    api = Api(dashboard_server.base)
    tenant = api.new_tenant()
    page.goto(dashboard_server.base + "/dashboard")
    page.fill("#login-form [name=email]", tenant.email)
    page.fill("#login-form [name=password]", "not the password")
    page.click("#login-form button")
    expect(page.locator("#signin-message")).to_have_text("Correo o contraseña incorrectos.")
    expect(page.locator("#connection")).to_have_attribute("data-state", "signed_out")
    assert page.evaluate("() => sessionStorage.length") == 0


def test_signed_in_page_survives_a_reload_but_not_a_new_tab(page, dashboard_server):
    api = Api(dashboard_server.base)
    tenant = api.new_tenant()
    sign_in(page, dashboard_server.base, tenant)
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    other = page.context.new_page()
    other.goto(dashboard_server.base + "/dashboard")
    expect(other.locator("#signin")).to_be_visible()
    assert other.evaluate("() => sessionStorage.length") == 0
    other.close()


def test_qrevents_js_over_native_eventsource_spends_tickets_and_resumes(page, dashboard_server):
    api = Api(dashboard_server.base)
    tenant = api.new_tenant()
    streams = []
    page.on("request", lambda req: streams.append(req.url) if STREAM_URL.search(req.url) else None)
    page.goto(dashboard_server.base + "/dashboard")
    page.evaluate(
        """async (key) => {
          const { QrEventsClient } = await import('/static/qrevents.js');
          window.seen = [];
          window.plainClient = new QrEventsClient({ credential: key, transport: 'eventsource' });
          window.plainClient.on('*', (data, meta) => window.seen.push(meta.id || meta.type));
          window.plainClient.start();
        }""",
        tenant.api_key,
    )
    page.wait_for_function("() => window.plainClient.state === 'connected'")
    first = api.create_qr(tenant)
    page.wait_for_function(f"() => window.seen.includes('qr_created_{first['qrId']}')")

    # Drop the connection; the next QR is created before the client comes back (>= 0.5 s).
    page.evaluate("() => window.plainClient.closeCurrent()")
    second = api.create_qr(tenant)
    page.wait_for_function("() => window.plainClient.stats.connections === 2")
    page.wait_for_function(f"() => window.seen.includes('qr_created_{second['qrId']}')")
    page.evaluate("() => window.plainClient.close()")
    seen = page.evaluate("() => window.seen.filter((id) => id.startsWith('qr_created_'))")
    assert seen == [f"qr_created_{first['qrId']}", f"qr_created_{second['qrId']}"]
    assert page.evaluate("() => window.plainClient.stats.replayed") == 1
    assert len(streams) == 2
    assert all("ticket=qrt_" in url and tenant.api_key not in url for url in streams)
    assert f"lastEventId=qr_created_{first['qrId']}" in streams[1]


def test_sign_in_past_its_working_day_asks_to_sign_in_again(browser, tmp_path):
    """Tokens are renewed until the sign-in itself ends (here 7 s after the password)."""
    database_url = f"sqlite:///{tmp_path / 'qrevents.db'}"
    live = LiveServer(
        tmp_path, database_url, jwt_expires_seconds=2, refresh_expires_seconds=7, **FAST
    ).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        api = Api(live.base)
        tenant = api.new_tenant()
        api.session.close()
        sign_in(page, live.base, tenant)
        page.wait_for_timeout(2500)  # past the first token's expiry: renewed, still in
        expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
        assert page.evaluate("() => window.qreventsDashboard.renewals") >= 2
        expect(page.locator("#connection")).to_have_attribute(
            "data-state", "signed_out", timeout=8000
        )
        expect(page.locator("#signin-message")).to_have_text(
            "La sesión expiró. Inicie sesión de nuevo."
        )
        assert page.evaluate("() => sessionStorage.length") == 0
    finally:
        context.close()  # first, so that the server need not wait for its idle connections
        live.stop()
