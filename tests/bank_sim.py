"""The simulated bank for tests: ``python -m qrevents.simulator`` on a loopback port.

One process per test session (``bank_simulator_server``); each test gets it reset
(``bank_simulator``: no fault switches, default settings, counters at zero) and registers
merchants of its own, so tests never see each other's accounts.
"""

import json
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests

from qrevents.banks import BankLink
from tests.live import ROOT, free_port


class BankSimulator:
    """A running simulated bank and the control calls a test makes to it."""

    def __init__(self, folder, state=None, **settings):
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root}/ApiGateway/"
        self.log_path = folder / f"simulator-{self.port}.log"
        self.command = [
            sys.executable,
            "-m",
            "qrevents.simulator",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--state",
            str(state or folder / f"simulator-{self.port}.db"),
        ]
        for name, value in settings.items():
            self.command += [f"--{name.replace('_', '-')}", str(value)]
        self.process = None

    def start(self, timeout=15):
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"simulator exited at start:\n{self.log()}")
            try:
                requests.get(self.root + "/simulator/requests", timeout=1).raise_for_status()
                return self
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"simulator did not answer in {timeout} s:\n{self.log()}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log(self):
        return self.log_path.read_text(errors="replace")

    def _post(self, path, body=None, expect=200):
        response = requests.post(self.root + path, json=body or {}, timeout=10)
        assert response.status_code == expect, (path, response.status_code, response.text)
        return response.json(parse_float=Decimal)

    def _get(self, path):
        response = requests.get(self.root + path, timeout=10)
        response.raise_for_status()
        return response.json(parse_float=Decimal)

    # Control calls

    def register(
        self,
        *,
        user_name=None,
        password=None,
        aes_key=None,
        account_number=None,
        notify_url=None,
        notify_bearer=None,
        branch_code=None,
        adapter="simulator",
    ):
        """A new merchant at the bank; its ``BankLink`` (what an admin would link)."""
        link = BankLink(
            adapter=adapter,
            base_url=self.base_url,
            user_name=user_name or "m" + uuid.uuid4().hex[:12],
            password=password or "clave-" + uuid.uuid4().hex[:8],
            aes_key=aes_key or uuid.uuid4().hex,  # 32 ASCII characters
            account_number=account_number or str(uuid.uuid4().int)[:10],
            branch_code=branch_code,
        )
        body = {
            "userName": link.user_name,
            "password": link.password,
            "aesKey": link.aes_key,
            "accountNumber": link.account_number,
        }
        if notify_url:
            body["notifyUrl"] = notify_url
        if notify_bearer:
            body["notifyBearer"] = notify_bearer
        self._post("/simulator/accounts", body, expect=201)
        return link

    def pay(self, qr_id, **fields):
        """Pay a QR as a customer would; the bank's PaymentQR (amount a ``Decimal``)."""
        return self._post("/simulator/pay", {"qrId": qr_id, **fields})

    def set_status(self, qr_id, status=None, **fields):
        """Cancel, pay or set any ``code`` at the bank without notifying the merchant."""
        body = dict(fields)
        if status is not None:
            body["status"] = status
        return self._post(f"/simulator/qr/{qr_id}/status", body)

    def faults(self, **switches):
        """Turn fault switches on (merged with those already on)."""
        return self._post("/simulator/faults", switches)

    def clear_faults(self):
        response = requests.delete(self.root + "/simulator/faults", timeout=10)
        response.raise_for_status()

    def settings(self, **values):
        return self._post("/simulator/settings", values)

    def current_settings(self):
        return self._get("/simulator/settings")

    def reset(self):
        return self._post("/simulator/reset")

    def requests(self):
        """How many requests each operation got since the last reset (plus ``expiredToken``)."""
        return self._get("/simulator/requests")

    def notifications(self):
        """Every notification attempt since the last reset, oldest first."""
        return self._get("/simulator/notifications")

    def qrs(self):
        return self._get("/simulator/qrs")["qrs"]

    def wait_for_notifications(self, predicate, timeout=10):
        """The attempts once ``predicate(attempts)`` holds; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            attempts = self.notifications()
            if predicate(attempts):
                return attempts
            if time.monotonic() > deadline:
                raise AssertionError(f"notifications never matched: {attempts}")
            time.sleep(0.05)


class NotificationReceiver:
    """A merchant's notification endpoint on loopback: records each POST and answers with
    the next ``responseCode`` of ``answers`` (the last one repeats), after ``delay`` seconds."""

    def __init__(self, answers=(0,), delay=0.0):
        self.answers = list(answers)
        self.delay = delay
        self.received = []  # (headers dict, parsed JSON body), in arrival order
        self._lock = threading.Lock()
        self._server = make_server(
            "127.0.0.1", 0, self._app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}/api/qrsimple/notifyPaymentQR"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length), parse_float=Decimal)
        headers = {"Authorization": environ.get("HTTP_AUTHORIZATION")}
        with self._lock:
            self.received.append((headers, body))
            code = self.answers[min(len(self.received), len(self.answers)) - 1]
        time.sleep(self.delay)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"responseCode": code, "message": ""}).encode()]

    def wait_for(self, count, timeout=10):
        """The bodies received once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} notifications, not {count}")
            time.sleep(0.02)
        return [body for _, body in self.received]

    def close(self):
        self._server.shutdown()
        self._server.server_close()


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def notification_receiver():
    """Start ``NotificationReceiver``s; each is closed after the test."""
    started = []

    def start(answers=(0,), delay=0.0):
        receiver = NotificationReceiver(answers, delay)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()


@pytest.fixture(scope="session")
def bank_simulator_server(tmp_path_factory):
    """One simulated bank for the session (notifications 0.1 s apart, not 1 s)."""
    folder = tmp_path_factory.mktemp("bank-simulator")
    simulator = BankSimulator(folder, notify_interval=0.1).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def bank_simulator(bank_simulator_server):
    """The session's simulated bank, reset: no switches, fresh counters, quick notifications."""
    bank_simulator_server.reset()
    yield bank_simulator_server
    bank_simulator_server.reset()
