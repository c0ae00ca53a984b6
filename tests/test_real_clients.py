"""Standard EventSource clients through real restarts: the npm ``eventsource`` package and
Chromium's native EventSource, each with an API key and a JWT in the query, the stream cookie
and a ticket, against a server that is stopped and started again (SIGTERM), reloaded (SIGHUP)
or loses its worker (SIGKILL), reached directly and through ``deploy/nginx.conf``.

Each client reconnects by itself, as its own code does: no helper library. The outcome for the
key, the JWT and the cookie: every durable event exactly once, in order, and the client still
connected at the end. A ticket serves one connection: its client stops at the restart (the
server refuses the spent ticket with a 401), which is why the cookie exists.

SQLite only: the restarts and the clients are under test here, not the database backends. The
counts per client and restart are printed and written to ``test-artifacts/real-clients.md``.
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from tests.live import ROOT, Api, LiveServer, free_port
from tests.test_dashboard_browser import CHROMIUM, LAUNCH_ARGS, require_browser
from tests.test_multiworker import wait_for
from tests.test_nginx import Nginx, nginx_binary
from tests.test_retention import _execute

JS = ROOT / "tests" / "js"
NODE_CLIENT = JS / "eventsource_client.mjs"
ARTIFACTS = ROOT / "test-artifacts"
CREDENTIALS = ("api_key", "jwt", "cookie", "ticket")
SURVIVORS = ("api_key", "jwt", "cookie")  # the ticket serves one connection
# Clients reconnect 0.3 s after a cut connection (a SIGKILL); a shutdown's own retry is 1-3 s.
SETTINGS = {"retry_ms": 300}
RESULTS = []  # (path, restart, client, credential, expected, received, duplicated, open)


def require_node_client():
    node = shutil.which("node")
    installed = (JS / "node_modules" / "eventsource" / "package.json").exists()
    if node and installed:
        return node
    reason = "the npm eventsource client is not installed (cd tests/js && npm ci)"
    if os.environ.get("QREVENTS_REQUIRE_ALL_BACKENDS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if not RESULTS:
        return
    lines = [
        "| path | restart | client | credential | expected | received | duplicated | open |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in RESULTS]
    table = "\n".join(lines)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "real-clients.md").write_text(table + "\n")
    print("\n" + table)


class Deployment:
    """A server on a fixed port (so that it can start again there), maybe behind nginx."""

    def __init__(self, folder, through_nginx):
        self.folder = folder
        self.database_url = f"sqlite:///{folder / 'qrevents.db'}"
        self.port = free_port()
        self.server = self._server().start()
        self.nginx = Nginx(folder / "nginx", self.port).start() if through_nginx else None
        self.base = self.nginx.base if self.nginx else self.server.base

    def _server(self):
        return LiveServer(self.folder / "server", self.database_url, port=self.port, **SETTINGS)

    def restart(self, kind):
        """Restart the way an operator (or the kernel) does, and wait until it answers."""
        if kind == "sigterm_then_start":
            self.server.stop(timeout=20, graceful=True)
            self.server = self._server().start()
        elif kind == "sighup_reload":
            old = set(self.server.worker_pids())
            self.server.signal(signal.SIGHUP)
            assert wait_for(lambda: set(self.server.worker_pids()).isdisjoint(old), timeout=15)
        else:  # sigkill_worker
            (worker,) = self.server.worker_pids()
            os.kill(worker, signal.SIGKILL)
            assert wait_for(lambda: self.server.worker_pids() not in ([], [worker]), timeout=15)
        assert wait_for(self._answers, timeout=15)

    def _answers(self):
        try:
            return requests.get(self.server.base + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        if self.nginx:
            self.nginx.stop()
        self.server.stop()


class Publisher(threading.Thread):
    """Creates QRs one after another, each on a new connection, until stopped; failures while
    the server is down are expected (what was committed is read from the log afterwards)."""

    def __init__(self, base, tenant):
        super().__init__(daemon=True)
        self.base, self.tenant, self.running = base, tenant, True

    def run(self):
        body = '{"amount": 10.00, "currency": "BOB", "description": "Durante el reinicio"}'
        headers = {**self.tenant.headers, "Content-Type": "application/json"}
        while self.running:
            try:
                requests.post(self.base + "/qr", data=body, headers=headers, timeout=2)
            except requests.RequestException:
                pass
            time.sleep(0.1)

    def stop(self):
        self.running = False
        self.join(5)


class NodeClient:
    """The npm package in a node process; its report lines are read by a thread."""

    def __init__(self, node, url, cookie=None):
        args = [node, str(NODE_CLIENT), url] + ([cookie] if cookie else [])
        self.process = subprocess.Popen(args, cwd=JS, stdout=subprocess.PIPE, text=True)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def log(self):
        return list(self.lines)

    def is_open(self):
        states = [line["readyState"] for line in self.lines]
        return bool(states) and states[-1] == 1

    def stop(self):
        self.process.kill()
        self.process.wait()


BROWSER_CLIENTS = """async ({apiKey, jwt}) => {
  window.clients = {};
  window.openClient = (name, url) => {
    const source = new EventSource(url, {withCredentials: true});
    const log = [];
    window.clients[name] = {source, log};
    source.onerror = () => log.push({kind: 'error', readyState: source.readyState});
    for (const type of ['connection', 'qr_created', 'stream_closed', 'resync_required']) {
      source.addEventListener(type, (e) => log.push(
        {kind: 'event', type, id: e.lastEventId || null, readyState: source.readyState}));
    }
  };
  // A ticket, and the stream cookie set by the same answer.
  window.newTicket = async () => {
    const response = await fetch('/events/ticket', {
      method: 'POST', headers: {Authorization: `Bearer ${apiKey}`},
    });
    return (await response.json()).data.ticket;
  };
  await window.newTicket();
  window.openClient('api_key', `/events/stream?api-key=${apiKey}`);
  window.openClient('jwt', `/events/stream?token=${jwt}`);
  window.openClient('cookie', '/events/stream');
}"""


class BrowserClients:
    """Native EventSources in one Chromium page of the deployment's origin."""

    def __init__(self, browser, base, tenant):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.goto(base + "/openapi.json")
        self.page.evaluate(BROWSER_CLIENTS, {"apiKey": tenant.api_key, "jwt": tenant.jwt})

    def open_ticket_client(self):
        self.page.evaluate(
            "async () => window.openClient('ticket', "
            "`/events/stream?ticket=${await window.newTicket()}`)"
        )

    def logs(self):
        return self.page.evaluate(
            "() => Object.fromEntries(Object.entries(window.clients).map("
            "([name, c]) => [name, [...c.log, {kind: 'state', readyState: c.source.readyState}]]))"
        )

    def stop(self):
        self.context.close()


class NodeClients:
    """The npm client with each credential, each in its own node process."""

    def __init__(self, node, api, base, tenant):
        self.node, self.api, self.tenant = node, api, tenant
        self.stream = base + "/events/stream"
        ticket = self._ticket()
        cookie = "; ".join(
            f"{c.name}={c.value}" for c in ticket.cookies if c.path == "/events/stream"
        )
        self.clients = {
            "api_key": NodeClient(node, f"{self.stream}?api-key={tenant.api_key}"),
            "jwt": NodeClient(node, f"{self.stream}?token={tenant.jwt}"),
            "cookie": NodeClient(node, self.stream, cookie),
        }

    def _ticket(self):
        response = self.api.post("/events/ticket", headers=self.tenant.headers)
        assert response.status_code == 201, response.text
        return response

    def open_ticket_client(self):
        if "ticket" in self.clients:
            self.clients.pop("ticket").stop()
        ticket = self._ticket().json()["data"]["ticket"]
        self.clients["ticket"] = NodeClient(self.node, f"{self.stream}?ticket={ticket}")

    def logs(self):
        return {name: client.log() for name, client in self.clients.items()}

    def stop(self):
        for client in self.clients.values():
            client.stop()


def durable_ids(log):
    return [line["id"] for line in log if line["kind"] == "event" and line["type"] == "qr_created"]


def logged_ids(deployment, account_id):
    rows = _execute(
        deployment.database_url,
        f"SELECT event_id FROM event WHERE account_id = {account_id} ORDER BY seq",
    )
    return [row[0] for row in rows]


RESTARTS = ("sigkill_worker", "sighup_reload", "sigterm_then_start")


@pytest.mark.parametrize("path", ["direct", "nginx"])
def test_standard_clients_get_every_event_once_across_each_kind_of_restart(browser, tmp_path, path):
    """One deployment, the clients connected once, then each kind of restart in turn; a new
    ticket client before each (a ticket serves one connection)."""
    node = require_node_client()
    if path == "nginx" and nginx_binary() is None:
        pytest.skip("nginx is not installed")
    deployment = Deployment(tmp_path, through_nginx=path == "nginx")
    api = Api(deployment.server.base)
    nodes = chromium = None
    try:
        tenant = api.new_tenant()
        nodes = NodeClients(node, api, deployment.base, tenant)
        chromium = BrowserClients(browser, deployment.base, tenant)

        def all_logs():
            return {
                **{("npm eventsource", n): log for n, log in nodes.logs().items()},
                **{("chromium", n): log for n, log in chromium.logs().items()},
            }

        before = []  # the log's ids before this restart
        for restart in RESTARTS:
            nodes.open_ticket_client()
            chromium.open_ticket_client()
            assert wait_for(lambda: all(connected(log) for log in all_logs().values()), 10)
            for _ in range(2):
                api.create_qr(tenant)
            api.session.close()  # an idle keep-alive connection would hold up a graceful stop
            publisher = Publisher(deployment.server.base, tenant)
            publisher.start()
            time.sleep(0.3)
            deployment.restart(restart)
            time.sleep(0.3)
            publisher.stop()
            api.create_qr(tenant)  # one more, live, at the end
            api.session.close()
            expected = logged_ids(deployment, tenant.account_id)
            done = lambda expected=expected: caught_up(all_logs(), expected)  # noqa: E731
            assert wait_for(done, timeout=20, interval=0.2)
            time.sleep(0.3)  # anything repeated after the last event would show now
            check_and_record(path, restart, all_logs(), before, expected)
            before = expected
    finally:
        for clients in (nodes, chromium):
            if clients is not None:
                clients.stop()
        deployment.stop()


def connected(log):
    return any(line.get("type") == "connection" for line in log)


def caught_up(logs, expected):
    return all(
        durable_ids(log)[-1:] == expected[-1:]
        for (_, name), log in logs.items()
        if name in SURVIVORS
    )


def check_and_record(path, restart, logs, before, expected):
    """Per client: this restart's events expected, received and duplicated; then the rules."""
    phase = expected[len(before) :]
    print(f"\n{path} {restart}: {len(phase)} events expected")
    for (client, name), log in logs.items():
        got = durable_ids(log)
        in_phase = [event_id for event_id in got if event_id in set(phase)]
        duplicated = len(in_phase) - len(set(in_phase))
        is_open = log[-1]["readyState"] == 1
        row = (path, restart, client, name, len(phase), len(in_phase), duplicated, is_open)
        RESULTS.append(row)
        print(f"  {client:16} {name:8} received {len(in_phase):3} dup {duplicated} open {is_open}")
    for (client, name), log in logs.items():
        got, is_open = durable_ids(log), log[-1]["readyState"] == 1
        if name in SURVIVORS:
            assert got == expected, (restart, client, name, got, expected)
            assert is_open, (restart, client, name, log[-5:])
        else:  # one connection: what came before the restart, once, in order; then closed
            assert got == phase[: len(got)] and len(got) >= 2, (restart, client, name, got)
            assert not is_open, (restart, client, name, log[-5:])
