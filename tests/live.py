"""A real qrevents server for tests: gunicorn gevent workers in a subprocess on loopback.

Modelled on Werkzeug's own live-server fixture: pick a free port, start, poll until the
server answers, read its log, stop it. Plus the clients a user would hold: a small HTTP
API helper (whose new tenants are linked to a simulated bank, ``tests.bank_sim``) and an
SSE client that reads real frames off the socket.
"""

import atexit
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BANK_SECRET = "test-bank-secret"
ADMIN_KEY = "qra_test_admin_key"


_HANDED_OUT = set()  # the ports free_port gave this process


def free_port():
    """A free loopback port no server of this test session had before: a client a finished
    test left behind (a browser's EventSource reconnecting, the simulated bank retrying a
    notification) must never reach a later test's server. Each xdist worker takes the ports
    of its own residue, so two workers never hand out the same one."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port % workers == worker and port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class LiveServer:
    """One gunicorn master and its gevent workers, with a private instance folder."""

    def __init__(
        self, tmp_path, database_url=None, workers=1, port=None, gunicorn_args=(), **settings
    ):
        self.tmp_path = Path(tmp_path)
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = self.tmp_path / f"server-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("QREVENTS_")}
        env.update(
            QREVENTS_INSTANCE_PATH=str(self.tmp_path / "instance"),
            QREVENTS_BIND=f"127.0.0.1:{self.port}",
            QREVENTS_JWT_SECRET_KEY="test-jwt-secret-of-at-least-32-bytes!!",
            QREVENTS_ADMIN_API_KEY=ADMIN_KEY,
            QREVENTS_BANK_WEBHOOK_SECRET=BANK_SECRET,
            QREVENTS_SECRET_KEY="test-secret-key-for-bank-links",
            QREVENTS_HEARTBEAT_SECONDS="0.2",
            # Webhook receivers in tests listen on 127.0.0.1; the refusal is tested apart.
            QREVENTS_WEBHOOK_ALLOW_PRIVATE="1",
            # The whole suite logs in from one address; tests of the limits set small ones.
            QREVENTS_LOGIN_LIMIT_PER_EMAIL="off",
            QREVENTS_LOGIN_LIMIT_PER_ADDRESS="off",
            QREVENTS_API_RATE_LIMIT="off",
            QREVENTS_AUTH_FAILURE_LIMIT_PER_ADDRESS="off",
            QREVENTS_AUTH_FAILURE_LIMIT_PER_ACCOUNT="off",
            WEB_CONCURRENCY=str(workers),
        )
        if database_url:
            env["QREVENTS_DATABASE_URL"] = database_url
        for name, value in settings.items():
            env[f"QREVENTS_{name.upper()}"] = str(value)
        if settings.get("env") == "production" and "webhook_allow_private" not in settings:
            del env["QREVENTS_WEBHOOK_ALLOW_PRIVATE"]  # refused in production
        self.env = env
        self.gunicorn_args = list(gunicorn_args)  # flags an operator adds to the command line
        self.process = None

    def start(self, timeout=20, args=("app:app",), cwd=ROOT, ready=(200,)):
        """Start ``gunicorn *args`` in ``cwd`` and wait until ``/health`` answers with one of
        the ``ready`` statuses."""
        reap_stopped_servers(exited_only=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), *self.gunicorn_args, *args],
            cwd=cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log()}")
            try:
                if requests.get(self.base + "/health", timeout=1).status_code in ready:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def json_log(self):
        """The structured log lines (``qrevents.logs``) written whole so far, parsed."""
        whole = self.log().rpartition("\n")[0]  # not a line the server is still writing
        return [json.loads(line) for line in whole.splitlines() if line.startswith('{"ts"')]

    def served_by(self, method, path):
        """The pids of the workers whose request log shows ``method path``."""
        return {
            entry["pid"]
            for entry in self.json_log()
            if entry["event"] == "request" and (entry["method"], entry["path"]) == (method, path)
        }

    def signal(self, signum):
        self.process.send_signal(signum)

    def worker_pids(self):
        """The pids of the gunicorn workers (children of the master) now running."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def stop(self, timeout=15, graceful=False, wait=True):
        """Quick stop by default (SIGQUIT): a graceful one waits out idle keep-alive clients,
        seconds per server; tests of graceful shutdown send SIGTERM themselves.

        ``wait=False`` (fixtures' teardown) returns at once: the server exits while the next
        test runs, and ``reap_stopped_servers`` waits for it at the latest."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM if graceful else signal.SIGQUIT)
        if wait:
            self._wait_for_exit(timeout)
        else:
            _STOPPING.append(self)

    def _wait_for_exit(self, timeout=15):
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


_STOPPING = []  # servers told to stop by a fixture's teardown, not yet waited for


def reap_stopped_servers(exited_only=False):
    """Wait for the servers stopped without waiting (only those already gone if
    ``exited_only``), so that none outlives the session."""
    for live in list(_STOPPING):
        if exited_only and live.process.poll() is None:
            continue
        live._wait_for_exit()
        _STOPPING.remove(live)


_SHARED_SIMULATOR = None


def shared_simulator():
    """The simulated bank new tenants are linked to: one per test process, started on first
    use, stopped at exit. Tests that switch faults on use a simulator of their own."""
    global _SHARED_SIMULATOR
    if _SHARED_SIMULATOR is None:
        from tests.bank_sim import BankSimulator

        folder = Path(tempfile.mkdtemp(prefix="qrevents-simulator-"))
        _SHARED_SIMULATOR = BankSimulator(folder, notify_interval=0.1).start()
        atexit.register(_SHARED_SIMULATOR.stop)
    return _SHARED_SIMULATOR


@dataclass
class Tenant:
    """An account with a user, a user's API key and a JWT, as a merchant would have."""

    account_id: int
    user_id: int
    email: str
    password: str
    api_key: str
    api_key_id: int
    jwt: str
    bank: dict | None = None  # the merchant's credentials at the simulated bank

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Api:
    """HTTP calls a merchant, the bank and the operator make."""

    base: str
    session: requests.Session = field(default_factory=requests.Session)
    # The bank new tenants are linked to (a tests.bank_sim.BankSimulator; when None, the
    # process's shared one).
    simulator: object = None

    def url(self, path):
        return self.base + path

    def get(self, path, **kw):
        return self.session.get(self.url(path), timeout=10, **kw)

    def post(self, path, **kw):
        return self.session.post(self.url(path), timeout=10, **kw)

    def delete(self, path, **kw):
        return self.session.delete(self.url(path), timeout=10, **kw)

    def admin(self, path, body):
        response = self.post(path, json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert response.status_code == 201, response.text
        return response.json()["data"]

    def new_tenant(self, currency="BOB", *, bank=True, notify_bearer=BANK_SECRET):
        """An account with a user, a key and a JWT, linked to the simulated bank (which
        notifies this server with ``notify_bearer``; None: unauthenticated, as BANECO's
        own specification has it)."""
        account = self.admin("/admin/accounts", {"name": "Comercio", "currency": currency})
        email, password = f"u{uuid.uuid4().hex[:10]}@example.com", "correct horse 1"
        user = self.admin(
            f"/admin/accounts/{account['id']}/users",
            {"email": email, "password": password, "name": "Ana"},
        )
        key = self.admin(
            f"/admin/accounts/{account['id']}/api-keys", {"name": "tests", "userId": user["id"]}
        )
        login = self.post("/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        creds = self.link_bank(account["id"], notify_bearer) if bank else None
        return Tenant(
            account_id=account["id"],
            user_id=user["id"],
            email=email,
            password=password,
            api_key=key["key"],
            api_key_id=key["id"],
            jwt=login.json()["data"]["accessToken"],
            bank=creds,
        )

    def link_bank(self, account_id, notify_bearer=BANK_SECRET):
        """Register a merchant at the simulator and link the account to it; its credentials."""
        simulator = self.simulator or shared_simulator()
        link = simulator.register(
            notify_url=self.url("/api/qrsimple/notifyPaymentQR"), notify_bearer=notify_bearer
        )
        creds = {
            "userName": link.user_name,
            "password": link.password,
            "aesKey": link.aes_key,
            "accountNumber": link.account_number,
        }
        body = {"adapter": "simulator", "baseUrl": link.base_url, **creds}
        response = self.post(
            f"/admin/accounts/{account_id}/bank",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert response.status_code in (200, 201), response.text
        return creds

    def create_qr(self, tenant, amount="100.50", **fields):
        body = {"amount": Decimal(amount), "currency": "BOB", "description": "Pago de servicios"}
        body.update(fields)
        response = self.post("/qr", data=dumps(body), headers=tenant.headers)
        assert response.status_code in (200, 201), response.text
        return response.json()["data"]

    def bank(self, path, body, *, sign=True, timestamp=None):
        """POST a bank callback, signed as the bank signs it (``body`` dict or raw bytes)."""
        from qrevents import bank_signature

        raw = body if isinstance(body, bytes) else dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if sign:
            headers["X-Bank-Signature"] = bank_signature.sign(BANK_SECRET, raw, timestamp)
        return self.post(path, data=raw, headers=headers)

    def pay(self, qr_id, amount="100.50", transaction_id=None, **fields):
        return self.bank("/bank/payments", payment_body(qr_id, amount, transaction_id, **fields))

    def stream(self, tenant=None, **kw):
        if tenant is not None and "headers" not in kw and "params" not in kw:
            kw["headers"] = tenant.headers
        return SSEClient(self.base, **kw)


def payment_body(qr_id, amount="100.50", transaction_id=None, **fields):
    body = {
        "qrId": qr_id,
        "transactionId": transaction_id or "BNK" + uuid.uuid4().hex[:16].upper(),
        "amount": Decimal(amount),
        "currency": "BOB",
        "senderName": "Juan Pérez",
        "senderDocumentId": "12345678",
        "senderAccount": "1234567890",
        "senderBankCode": "BANECO",
        "description": "Pago de servicios",
        "paymentDate": "2026-01-15T10:30:00.000Z",
    }
    body.update(fields)
    return body


def dumps(body):
    """JSON with exact amounts, as a careful client sends them."""
    import simplejson

    return simplejson.dumps(body, use_decimal=True)


@dataclass
class SseEvent:
    event: str
    data: dict
    id: str | None = None

    @property
    def durable(self):
        return self.id is not None


class SSEClient:
    """Reads SSE frames from a real socket; every read has a deadline."""

    def __init__(
        self,
        base,
        path="/events/stream",
        headers=None,
        params=None,
        timeout=5,
        receive_buffer=None,
    ):
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        if receive_buffer:  # a reader that can fall behind: a small TCP window
            self.conn.sock = socket.socket()
            self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            self.conn.sock.settimeout(timeout)
            self.conn.sock.connect((host, int(port)))
        target = path + ("?" + urlencode(params) if params else "")
        self.conn.request("GET", target, headers=headers or {})
        # Kept: a "Connection: close" answer (every stream's) detaches it from ``conn``.
        self.sock = self.conn.sock
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers
        self.retry = None
        self.raw = []
        self.closed = False

    def body_json(self):
        return json.loads(self.response.read())

    def next(self, timeout=5):
        """The next event (heartbeats included); None when the server ended the stream."""
        self.sock.settimeout(timeout)
        fields, data = {}, []
        while True:
            line = self.response.readline()
            if not line:
                self.closed = True
                return None
            self.raw.append(line)
            line = line.decode().rstrip("\n")
            if line == "":
                if data or "event" in fields:
                    payload = json.loads("\n".join(data), parse_float=Decimal)
                    return SseEvent(fields.get("event", "message"), payload, fields.get("id"))
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "retry":
                self.retry = int(value)
            else:
                fields[name] = value

    def _events_within(self, timeout, waited_for):
        """Events as they come; TimeoutError at the deadline, EOFError if the stream ends.
        ``waited_for()`` says what was awaited, for the error."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{waited_for()} within {timeout}s")
            event = self.next(remaining)
            if event is None:
                raise EOFError(f"stream ended before {waited_for()}")
            yield event

    def take(self, count, timeout=5, skip=("heartbeat",)):
        """The next ``count`` events whose type is not skipped."""
        got = []
        events = self._events_within(timeout, lambda: f"{count} events (got {len(got)}: {got})")
        while len(got) < count:
            event = next(events)
            if event.event not in skip:
                got.append(event)
        return got

    def until(self, event_type, timeout=5):
        """Events up to and including the first of ``event_type``."""
        got = []
        for event in self._events_within(timeout, lambda: f"{event_type} (got {got})"):
            got.append(event)
            if event.event == event_type:
                return got

    def quiet_for(self, seconds):
        """The non-heartbeat events that arrive within ``seconds`` (expected: none)."""
        got, deadline = [], time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.next(remaining)
            except TimeoutError:
                break
            if event is None:
                break
            if event.event != "heartbeat":
                got.append(event)
        return got

    def close(self):
        self.response.close()
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BankTraffic:
    """Payments flowing from several threads while servers come and go, as a bank sends them.

    Each round creates a single-use QR and pays it. A refused or cut connection is retried
    as the bank retries (the same notice, to any server still serving); every answer is
    kept, so a test can say which were 5xx and which payments were acknowledged.
    """

    def __init__(self, servers, tenant, threads=6, give_up_after=15, retry_unavailable=False):
        self.servers = servers  # the test adds and removes servers while this runs
        self.tenant = tenant
        self.threads = threads
        self.give_up_after = give_up_after
        self.retry_unavailable = retry_unavailable  # a 503 with Retry-After: send it again
        self.acknowledged = set()
        self.failures = []  # (what, status or error, body)
        self.unavailable = []  # the 503s retried
        self._stop = threading.Event()
        self._running = []

    def start(self):
        self._running = [threading.Thread(target=self._run) for _ in range(self.threads)]
        for thread in self._running:
            thread.start()
        return self

    def stop(self):
        self._stop.set()
        for thread in self._running:
            thread.join(30)

    def _run(self):
        clients = {}
        while not self._stop.is_set():
            qr_body = {"amount": Decimal("1.00"), "currency": "BOB", "description": "x"}
            qr = self._send(
                clients, "qr", "post", "/qr", data=dumps(qr_body), headers=self.tenant.headers
            )
            if qr is None:
                continue
            notice = payment_body(qr.json()["data"]["qrId"], "1.00")
            if self._send(clients, "payment", "bank", "/bank/payments", notice) is not None:
                self.acknowledged.add(notice["transactionId"])

    def _send(self, clients, what, method, *args, **kwargs):
        """The answer to ``Api.method(*args)``, retried on connection errors (and 503s if
        asked); None (the failure kept) if it is not 2xx."""
        deadline = time.monotonic() + self.give_up_after
        while True:
            base = random.choice(self.servers).base
            api = clients.setdefault(base, Api(base))
            try:
                response = getattr(api, method)(*args, **kwargs)
            except requests.ConnectionError as error:
                if time.monotonic() > deadline:
                    self.failures.append((what, repr(error), ""))
                    return None
                time.sleep(0.05)
                continue
            except requests.Timeout as error:
                self.failures.append((what, repr(error), ""))
                return None
            if response.status_code == 503 and self.retry_unavailable:
                self.unavailable.append((what, response.headers.get("Retry-After")))
                if time.monotonic() < deadline:
                    time.sleep(0.05)  # a short Retry-After: the test has no second to spare
                    continue
            if response.status_code >= 300:
                self.failures.append((what, response.status_code, response.text[:300]))
                return None
            return response
