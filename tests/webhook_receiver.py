"""A webhook receiver for tests: a threaded HTTP server on loopback that records every POST
(path, headers, raw body, arrival and answer times) and answers as each path is told to."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    arrived: float
    answered: float = 0.0
    status: int = 0

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Behaviour:
    """How one path answers: the statuses in turn (the last one repeats), after ``delay``."""

    statuses: list = field(default_factory=lambda: [200])
    delay: float = 0.0
    location: str | None = None


class WebhookReceiver:
    def __init__(self):
        self.received = []
        self.behaviours = {}
        self.in_flight = {}  # path -> requests being answered now
        self.overlaps = []  # paths that got a request while one was in flight
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver._handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def behave(self, path, **kwargs):
        self.behaviours[path] = Behaviour(**kwargs)

    def _handle(self, handler):
        length = int(handler.headers.get("Content-Length", 0))
        body = handler.rfile.read(length)
        path = handler.path
        got = Received(path, dict(handler.headers), body, time.monotonic())
        with self._lock:
            if self.in_flight.get(path, 0):
                self.overlaps.append(path)
            self.in_flight[path] = self.in_flight.get(path, 0) + 1
            behaviour = self.behaviours.get(path, Behaviour())
            answered_before = sum(1 for r in self.received if r.path == path)
            status = behaviour.statuses[min(answered_before, len(behaviour.statuses) - 1)]
            self.received.append(got)
        try:
            if behaviour.delay:
                time.sleep(behaviour.delay)
        finally:
            # Done before the answer is written: once the deliverer has it, its next request
            # may arrive before this thread would get the lock again.
            with self._lock:
                self.in_flight[path] -= 1
                got.answered, got.status = time.monotonic(), status
        try:
            handler.send_response(status)
            if behaviour.location:
                handler.send_header("Location", behaviour.location)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")
        except OSError:
            pass  # the deliverer gave up waiting

    def at(self, path="/hook"):
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, count, path="/hook", timeout=10, accepted=True):
        """The first ``count`` requests to ``path`` (answered 2xx if ``accepted``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [r for r in self.at(path) if not accepted or 200 <= r.status < 300]
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise TimeoutError(f"{count} webhooks at {path} within {timeout}s; got {self.at(path)}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    live = WebhookReceiver()
    yield live
    live.close()
