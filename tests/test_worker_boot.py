"""A worker that boots while PostgreSQL is away keeps the server up: it answers 503 until
the database is back, then serves (gunicorn stops the whole master when a worker fails to
boot, so a failed boot must never be what a database outage causes)."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from tests.live import Api, LiveServer, free_port

PG_BIN = "/usr/local/bin"


def _as_postgres(command):
    """PostgreSQL's tools refuse to run as root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class PrivatePostgres:
    """A PostgreSQL server of the test's own (``initdb`` on a free port), started and
    stopped at will; the machine's server is never touched."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="qrevents-pg-")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self.data = os.path.join(self.folder, "data")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync")

    def _run(self, tool, *args):
        subprocess.run(
            _as_postgres([os.path.join(PG_BIN, tool), *args]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self):
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = os.path.join(self.folder, "server.log")
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w", "start")

    def stop(self):
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def remove(self):
        subprocess.run(
            _as_postgres(
                [os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", "immediate", "stop"]
            ),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def postgres():
    if not os.path.exists(os.path.join(PG_BIN, "initdb")):
        pytest.skip("needs PostgreSQL's initdb and pg_ctl")
    server = PrivatePostgres()
    yield server
    server.remove()


def test_workers_booting_while_the_database_is_away_answer_503_and_serve_once_it_is_back(
    postgres, tmp_path
):
    postgres.start()
    postgres.stop()  # away before the server starts: its first worker boots without it
    live = LiveServer(tmp_path, postgres.url).start(ready=(503,))
    try:
        api = Api(live.base)
        refused = api.pay("QR1")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "unavailable"
        # A browser's EventSource gives up for good on a 503: the stream says why instead.
        with api.stream(headers={"Authorization": "Bearer qrk_anything"}) as stream:
            assert stream.status == 200
            closed = stream.next()
            assert (closed.event, closed.data["reason"]) == ("stream_closed", "overloaded")
            assert stream.next() is None

        (first_worker,) = live.worker_pids()
        os.kill(first_worker, signal.SIGKILL)  # the master boots another, still without it
        deadline = time.monotonic() + 10
        while live.worker_pids() in ([], [first_worker]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert api.get("/health").status_code == 503
        assert live.process.poll() is None

        postgres.start()
        deadline = time.monotonic() + 10
        while api.get("/health").status_code != 200:
            assert time.monotonic() < deadline, live.log()[-2000:]
            time.sleep(0.2)
        tenant = api.new_tenant()
        qr = api.create_qr(tenant)
        assert api.pay(qr["qrId"]).status_code == 200
        assert live.process.poll() is None
    finally:
        live.stop()
    assert "Worker failed to boot" not in live.log()
