"""A merchant's whole day with the dashboard, in a real headless Chromium against a real
gunicorn server: charge mode through a payment, today's chart after 50 payments across the
hours, a password session renewed many times with no event missed, the CSV export checked
row by row against the ledger, and axe-core finding no serious accessibility fault.

Screenshots at desktop (1280x800) and phone (390x844) widths go to ``test-artifacts/``.
"""

import csv
import io
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.ledger_check import _rows
from tests.live import Api, LiveServer
from tests.test_dashboard_browser import (
    ARTIFACTS,
    FAST,
    LIVE_MS,
    browser,  # noqa: F401 (fixture)
    expect,
    sign_in,
)
from tests.test_payment_reports import iso_of

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
AXE = Path(__file__).resolve().parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
LA_PAZ = timedelta(hours=-4)
RENEWALS = 30  # 2-second tokens renewed 30 times: an hour of 2-minute ones
# The tab can be told it is hidden (as when the merchant is in another tab).
HIDDEN_TAB = """Object.defineProperty(document, 'hidden', {get: () => Boolean(window.__hidden)});"""


@pytest.fixture(scope="module")
def day_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("day")
    live = LiveServer(folder, f"sqlite:///{folder / 'qrevents.db'}", **FAST).start()
    yield live
    live.stop()


@pytest.fixture
def tabs(browser):  # noqa: F811
    """New tabs at a given viewport, each with its own storage; closed after the test."""
    contexts = []

    def open_tab(viewport, **options):
        context = browser.new_context(viewport=viewport, locale="en-US", **options)
        contexts.append(context)
        tab = context.new_page()
        tab.errors = []
        tab.on("pageerror", lambda error: tab.errors.append(str(error)))
        tab.add_init_script(HIDDEN_TAB)
        return tab

    yield open_tab
    for context in contexts:
        context.close()


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"day-{name}.png")


def axe_violations(page):
    """Serious and critical axe-core violations of the page as it is now."""
    if not AXE.exists():
        pytest.fail("axe-core is not installed: cd tests/js && npm ci")
    # Evaluated over the DevTools protocol: the page's CSP (no inline script) stays on.
    page.evaluate(AXE.read_text() + "\n;void 0")
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
             .filter((v) => ['serious', 'critical'].includes(v.impact))
             .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)"""
    )
    return found


def counters(page):
    return page.evaluate("() => ({...window.qreventsDashboard.alerts})")


def paid_at(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_charge_mode_shows_the_bank_qr_and_confirms_the_payment(tabs, day_server):
    api = Api(day_server.base)
    tenant = api.new_tenant()
    for viewport, width in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page = tabs(viewport)
        sign_in(page, day_server.base, tenant)
        if width == "desktop":  # one click from a new QR
            page.fill("#qr-form [name=amount]", "42,75")
            page.fill("#qr-form [name=description]", "Almuerzo ejecutivo")
            page.click("#qr-form button[name=charge]")
        else:  # one click from an active QR of the list
            qr = api.create_qr(tenant, "18.50", description="Jugo de naranja")
            page.locator(f'#qr-list li[data-qr-id="{qr["qrId"]}"] .charge-button').click()
        dialog = page.locator("#charge")
        expect(dialog).to_be_visible()
        expect(dialog).to_have_attribute("data-state", "waiting")
        image = page.locator("#charge-image")
        page.wait_for_function("() => document.querySelector('#charge-image').naturalWidth > 0")
        box = image.bounding_box()
        assert box["width"] >= 300 and box["height"] >= 300, box
        assert image.evaluate("(img) => getComputedStyle(img).imageRendering") == "pixelated"
        amount = "Bs 42,75" if width == "desktop" else "Bs 18,50"
        expect(page.locator("#charge-amount")).to_have_text(amount)
        shot(page, f"charge-waiting-{width}")
        if width == "desktop":
            assert axe_violations(page) == []
        qr_id = page.evaluate("() => window.qreventsDashboard.state.qrs.newestFirst()[0].qrId")
        beeps = counters(page)["beeps"]
        decimal_amount = "42.75" if width == "desktop" else "18.50"
        assert api.pay(qr_id, decimal_amount, senderName="Lucía Choque").status_code == 200
        expect(page.locator("#charge-paid")).to_be_visible(timeout=LIVE_MS)
        expect(page.locator("#charge-paid")).to_contain_text("Pagado")
        expect(page.locator("#charge-paid-detail")).to_have_text(f"{amount} de Lucía Choque")
        assert counters(page)["beeps"] == beeps + 1  # the sound
        shot(page, f"charge-paid-{width}")
        expect(dialog).to_be_hidden(timeout=5000)  # back to the dashboard by itself
        expect(page.locator("#dashboard")).to_be_visible()
        assert page.errors == []


def test_escape_leaves_charge_mode_and_returns_the_focus(tabs, day_server):
    api = Api(day_server.base)
    tenant = api.new_tenant()
    page = tabs(DESKTOP)
    sign_in(page, day_server.base, tenant)
    qr = api.create_qr(tenant, "5.00", description="Café")
    button = page.locator(f'#qr-list li[data-qr-id="{qr["qrId"]}"] .charge-button')
    button.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#charge")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#charge")).to_be_hidden()
    assert button.evaluate("(el) => el === document.activeElement")


def test_days_chart_after_50_payments_across_hours(tabs, day_server):
    api = Api(day_server.base)
    tenant = api.new_tenant()
    now = datetime.now(UTC).replace(microsecond=0)
    local_midnight = datetime.combine((now + LA_PAZ).date(), datetime.min.time()) - LA_PAZ
    span = min(
        timedelta(hours=10), now.replace(tzinfo=None) - local_midnight - timedelta(minutes=1)
    )
    page = tabs(DESKTOP)
    sign_in(page, day_server.base, tenant)
    page.click("#sound-toggle")  # muted: no beeps, and it stays so after a reload
    qr = api.create_qr(tenant, "10.00", singleUse=False, modifyAmount=True)
    plan = [
        (now - span * (index / 49), Decimal(10 + index % 7 * 5) + Decimal("0.25"))
        for index in range(50)
    ]

    def pay(part):
        payer = Api(day_server.base)  # a connection per thread
        for moment, amount in part:
            response = payer.pay(qr["qrId"], str(amount), paymentDate=paid_at(moment))
            assert response.status_code == 200, response.text
        payer.session.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(pay, [plan[i::4] for i in range(4)]))
    expected = {}
    for moment, _ in plan:
        hour = (moment + LA_PAZ).hour
        expected[hour] = expected.get(hour, 0) + 1
    total = sum(amount for _, amount in plan)
    total_text = "Bs " + f"{total:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")
    expect(page.locator("#glance-count")).to_have_text("50", timeout=3000)
    expect(page.locator("#glance-total")).to_have_text(total_text)

    def bars():
        return page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('#glance-chart .bar')]
                 .filter((bar) => Number(bar.dataset.count) > 0)
                 .map((bar) => [Number(bar.dataset.index), Number(bar.dataset.count)]))"""
        )

    live_bars = {int(hour): count for hour, count in bars().items()}
    assert live_bars == expected
    assert len(expected) >= min(3, span // timedelta(hours=1))
    assert counters(page)["beeps"] == 0 and counters(page)["announced"] >= 50
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "chart-desktop")
    assert axe_violations(page) == []
    # after a reload, the ledger's totals are the same
    page.reload()
    expect(page.locator("#glance-count")).to_have_text("50")
    expect(page.locator("#glance-total")).to_have_text(total_text)
    assert {int(hour): count for hour, count in bars().items()} == expected
    expect(page.locator("#sound-toggle")).to_have_attribute("aria-pressed", "false")
    # the week: today's bar holds the 50
    page.click("#period-week")
    expect(page.locator("#glance-title")).to_have_text("La semana de un vistazo")
    expect(page.locator("#glance-chart .bar")).to_have_count(7)
    assert bars() == {"6": 50}
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "chart-week-desktop")
    page.click("#period-day")
    page.set_viewport_size(PHONE)
    page.evaluate("() => window.scrollTo(0, 0)")
    expect(page.locator("#glance-chart .bar")).to_have_count(24)
    # the header on a phone: title and Salir on one line, the connection under them
    title = page.locator(".topbar h1").bounding_box()
    sign_out = page.locator("#sign-out").bounding_box()
    connection = page.locator("#connection").bounding_box()
    assert abs(sign_out["y"] - title["y"]) < 20 and connection["y"] > sign_out["y"] + 10
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "chart-phone")
    assert page.errors == []


def test_a_payment_while_the_tab_is_hidden_makes_a_desktop_notification(tabs, day_server):
    api = Api(day_server.base)
    tenant = api.new_tenant()
    page = tabs(DESKTOP)
    page.context.grant_permissions(["notifications"])
    sign_in(page, day_server.base, tenant)
    qr = api.create_qr(tenant, "7.00")
    page.evaluate("() => { window.__hidden = true; }")
    assert api.pay(qr["qrId"], "7.00").status_code == 200
    expect(page.locator("#announcer")).to_contain_text("Pago recibido: Bs 7,00 de Juan Pérez")
    assert counters(page)["notifications"] == 1
    page.evaluate("() => { window.__hidden = false; }")
    qr = api.create_qr(tenant, "8.00")
    assert api.pay(qr["qrId"], "8.00").status_code == 200
    expect(page.locator("#announcer")).to_contain_text("Bs 8,00")
    assert counters(page)["notifications"] == 1  # a visible tab needs no notification


def test_a_session_renewed_many_times_misses_no_event(browser, tmp_path):  # noqa: F811
    live = LiveServer(
        tmp_path, f"sqlite:///{tmp_path / 'qrevents.db'}", jwt_expires_seconds=2, **FAST
    ).start()
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        api = Api(live.base)
        tenant = api.new_tenant()
        sign_in(page, live.base, tenant)
        page.evaluate(
            """() => {
              window.__paid = [];
              window.__states = [];
              const client = window.qreventsDashboard.client;
              client.on('qr_payment', (data) => window.__paid.push(data.transactionId));
              client.on('state', (state) => window.__states.push(state));
            }"""
        )
        qr = api.create_qr(tenant, "1.00", singleUse=False, modifyAmount=True)
        sent = []
        started = time.monotonic()
        # A payment about every 0.6 s all along the renewals.
        while page.evaluate("() => window.qreventsDashboard.renewals") < RENEWALS:
            assert time.monotonic() - started < 45, "renewals too slow"
            now = paid_at(datetime.now(UTC))
            response = api.pay(qr["qrId"], f"{1 + len(sent) % 9}.00", paymentDate=now)
            assert response.status_code == 200
            sent.append(response.json()["data"]["transactionId"])
            page.wait_for_timeout(600)
        page.wait_for_function(f"() => window.__paid.length >= {len(sent)}", timeout=5000)
        page.wait_for_timeout(500)  # a late repeat would show now
        received = page.evaluate("() => window.__paid")
        states = page.evaluate("() => window.__states")
        stats = page.evaluate("() => ({...window.qreventsDashboard.client.stats})")
        assert sorted(received) == sorted(sent) and len(received) == len(set(received))
        assert "signed_out" not in states
        expect(page.locator("#signin")).to_be_hidden()
        expect(page.locator("#glance-count")).to_have_text(str(len(sent)))
        # the stream was cut at each token's expiry and resumed: several connections
        assert stats["connections"] >= 5, stats
        total = sum(Decimal(f"{1 + i % 9}.00") for i in range(len(sent)))
        balance = "Bs " + f"{total:.2f}".replace(".", ",")
        expect(page.locator("#balance")).to_have_text(balance)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "day-session-renewed-desktop.png")
        page.set_viewport_size(PHONE)
        page.screenshot(path=ARTIFACTS / "day-session-renewed-phone.png")
        print(f"renewals, payments, connections: {RENEWALS}, {len(sent)}, {stats}")
        # Salir revokes the sign-in on the server: its refresh cookie renews nothing more
        page.click("#sign-out")
        expect(page.locator("#signin")).to_be_visible()
        assert (
            page.evaluate("async () => (await fetch('auth/refresh', {method: 'POST'})).status")
            == 401
        )
        assert page.errors == []
    finally:
        context.close()
        live.stop()


def test_csv_download_matches_the_ledger_row_by_row(tabs, day_server, tmp_path):
    api = Api(day_server.base)
    tenant = api.new_tenant()
    qr = api.create_qr(tenant, "10.00", singleUse=False, modifyAmount=True)
    today = (datetime.now(UTC) + LA_PAZ).date()
    first, last = today - timedelta(days=3), today - timedelta(days=1)
    noon = datetime.combine(first, datetime.min.time()) + timedelta(hours=16)  # 12:00 La Paz
    payers = ["Rosa Mamani", "Pedro Quispe", "Rosa Flores", 'Ana, "la de la esquina"']
    for index, payer in enumerate(payers * 2):
        when = noon + timedelta(days=index % 4, minutes=index)  # the 4th day is out of range
        assert (
            api.pay(
                qr["qrId"], f"{10 + index}.50", senderName=payer, paymentDate=paid_at(when)
            ).status_code
            == 200
        )
    page = tabs(DESKTOP, accept_downloads=True)
    sign_in(page, day_server.base, tenant)
    form = page.locator("#search-form")
    form.locator("[name=from]").fill(first.strftime("%d/%m/%Y"))
    form.locator("[name=to]").fill(last.strftime("%d/%m/%Y"))
    form.locator("[name=minAmount]").fill("11,50")
    form.locator("[name=payer]").fill("rosa")
    form.locator("button[type=submit]").click()
    expect(page.locator("#search-results li")).to_have_count(3)  # 12.50, 14.50 and 16.50
    expect(page.locator("#search-message")).to_have_text("3 pagos encontrados.")
    amounts = page.locator("#search-results .row-amount").all_text_contents()
    assert amounts == ["Bs 16,50", "Bs 14,50", "Bs 12,50"]
    form.locator("[name=minAmount]").fill("")
    form.locator("[name=payer]").fill("")
    with page.expect_download() as download:
        page.click("#export-csv")
    path = tmp_path / "export.csv"
    download.value.save_as(path)
    assert download.value.suggested_filename == f"pagos-{first}-{last}.csv"
    shot(page, "search-csv-desktop")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    header, *lines = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    start = datetime.combine(first, datetime.min.time()) - LA_PAZ
    end = datetime.combine(last + timedelta(days=1), datetime.min.time()) - LA_PAZ
    ledger = _rows(
        day_server,
        "SELECT p.transaction_id, q.qr_id, p.amount_cents, p.sender_name, p.payment_date,"
        " p.created_at FROM payment p JOIN qr q ON q.id = p.qr_id"
        " WHERE p.account_id = %s AND p.payment_date >= %s AND p.payment_date < %s"
        " ORDER BY p.id",
        (tenant.account_id, start.isoformat(" "), end.isoformat(" ")),
    )
    assert len(lines) == len(ledger) == 6  # two of the eight are on the day after `to`
    for line, row in zip(lines, ledger, strict=True):
        record = dict(zip(header, line, strict=True))
        assert (record["transactionId"], record["qrId"]) == (row[0], row[1])
        assert Decimal(record["amount"]) * 100 == row[2]
        assert record["senderName"] == row[3]
        assert (record["paymentDate"], record["createdAt"]) == (iso_of(row[4]), iso_of(row[5]))


def test_last_beat_shows_the_connection_time_at_once_not_after_a_heartbeat(browser, tmp_path):  # noqa: F811
    live = LiveServer(tmp_path, f"sqlite:///{tmp_path / 'qrevents.db'}", heartbeat_seconds=30)
    live.start()
    context = browser.new_context(viewport=PHONE, locale="en-US")
    try:
        page = context.new_page()
        api = Api(live.base)
        tenant = api.new_tenant(bank=False)
        api.session.close()
        sign_in(page, live.base, tenant)  # waits for "connected"
        expect(page.locator("#last-heartbeat")).to_have_text(
            re.compile(r"^\d\d:\d\d:\d\d$"), timeout=1000
        )  # the next heartbeat is 30 s away
        # and the due date field asks for dd/mm/aaaa on an English browser
        due = page.locator("#qr-form [name=dueDate]")
        assert (
            due.get_attribute("type") is None and due.get_attribute("placeholder") == "dd/mm/aaaa"
        )
    finally:
        context.close()
        live.stop()
