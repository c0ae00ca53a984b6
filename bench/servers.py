"""The servers under test: started pinned to one core, measured from /proc, then stopped.

Each target knows how to start its server, how a stream asks to subscribe to a channel
(an account), and how to trigger one event carrying the bench's marker: a QR or a signed
bank payment for qrevents, a publish call for the yardsticks (the limit, nchan,
sse-starlette) and for flask-sse.
"""

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from .client import http_request

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
SERVER_CPU = 0
CLIENT_CPU = 1
BANK_SECRET = "bench-bank-secret"
ADMIN_KEY = "qra_bench_admin_key"


def bank_signature(secret, body):
    """``X-Bank-Signature`` as docs/CONTRACT.md (bank callbacks) defines it, written here so
    the load generator does not import the app (and its first request does not pay for that
    import)."""
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pin_to_server_core():
    os.sched_setaffinity(0, {SERVER_CPU})


def process_tree(pid):
    """``pid`` and its children (the gunicorn master and its workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid] + [int(child) for child in children]


def cpu_seconds(pids):
    """User + system CPU of these processes so far (clock-tick resolution)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
        except OSError:
            continue
    return total


def redis_cpu_seconds(url):
    """Redis's own CPU so far (flask-sse fans out inside Redis); None without Redis."""
    if not url:
        return None
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]


def bank_notice(qr_id, marker_text):
    """A signed bank payment's body (what qrevents gets), marked for the latency tally."""
    return {
        "qrId": qr_id,
        "transactionId": "BNK" + uuid.uuid4().hex[:16].upper(),
        "amount": 1.00,
        "currency": "BOB",
        "senderName": marker_text,
        "senderDocumentId": "12345678",
        "senderAccount": "1234567890",
        "senderBankCode": "BANECO",
        "description": "bench",
        "paymentDate": "2026-11-28T02:00:00.000Z",
    }


def payload(marker_text):
    """Data of the size and shape of a qrevents ``qr_payment`` event, for the baselines."""
    return {
        **bank_notice("26112800000000000001", marker_text),
        "paymentTime": None,
        "singleUse": False,
        "newStatus": "active",
        "review": False,
        "reviewReason": None,
    }


class Server:
    """A server process pinned to the server core, logging to a file in ``workdir``."""

    name = "server"
    has_connection_event = True
    supports_resume = True
    max_streams = 19000
    redis_url = None

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.process = None

    def command(self):
        raise NotImplementedError

    def environment(self):
        return dict(os.environ)

    def start(self, timeout=30):
        log = open(self.workdir / f"{self.name}.log", "ab")
        self.process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin_to_server_core,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.workdir}")
            if self._answers():
                time.sleep(0.3)  # let the workers finish starting
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout}s")

    def _answers(self):
        return self._accepts(http_request("GET", self.probe_path))

    def _accepts(self, request):
        """Whether the server answers ``request`` with a 2xx (it is up and serving)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                sock.sendall(request)
                return sock.recv(64).startswith(b"HTTP/1.1 2")
        except OSError:
            return False

    probe_path = "/"

    def pids(self):
        return process_tree(self.process.pid)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    async def setup(self, http, accounts):
        """The channels (one per account) the scenarios use; made once per target."""
        return [f"bench-{uuid.uuid4().hex[:8]}-{n}" for n in range(accounts)]


class Yardstick(Server):
    """A server that publishes with ``POST /publish?channel=C`` and streams ``GET /stream``."""

    def stream_request(self, channel, last_id=None):
        headers = [("Accept", "text/event-stream")]
        if last_id:
            headers.append(("Last-Event-ID", last_id))
        return http_request("GET", f"/stream?channel={channel}", headers=headers)

    def publish_request(self, channel, marker_text, kind):
        body = json.dumps(payload(marker_text), separators=(",", ":")).encode()
        return http_request("POST", f"/publish?channel={channel}&type=qr_payment", body)


class LimitServer(Yardstick):
    """Bare gevent writing one preformatted chunk to every socket of a channel."""

    name = "limit"
    probe_path = "/publish?channel=probe"

    def command(self):
        return [str(BIN / "python"), "-m", "bench.limit_server", "--port", str(self.port)]

    def _answers(self):
        return self._accepts(http_request("POST", self.probe_path))


NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
NCHAN_INSTALL = "apt-get install -y libnginx-mod-nchan"


def nginx_binary():
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
    )


def nchan_missing():
    """Why the nchan yardstick cannot run here (one line with the fix), or None."""
    if nginx_binary() is None or not NCHAN_MODULE.exists():
        return f"nginx's nchan module is not installed: {NCHAN_INSTALL}"
    return None


class NchanServer(Yardstick):
    """nginx with the nchan module on one worker process: C on epoll, its in-memory store.

    ``POST /publish?channel=C`` is nchan's HTTP publisher (the event type in
    ``X-EventSource-Event``); ``GET /stream?channel=C`` its EventSource subscriber, which
    greets with a ``: hi`` comment (the connection event) and resumes from ``Last-Event-ID``.
    """

    name = "nchan"
    probe_path = "/probe"
    conf_template = """\
load_module {module};
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
{user}
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 40000; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    nchan_shared_memory_size 256m;
    server {{
        listen {host}:{port} backlog=4096;
        location = /probe {{ return 200 "ok"; }}
        location = /publish {{
            nchan_publisher http;
            nchan_channel_id $arg_channel;
            nchan_message_buffer_length 1000;
            nchan_message_timeout 1h;
        }}
        location = /stream {{
            nchan_subscriber eventsource;
            nchan_channel_id $arg_channel;
        }}
    }}
}}
"""

    def command(self):
        missing = nchan_missing()
        if missing:
            raise RuntimeError(missing)
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            self.conf_template.format(
                module=NCHAN_MODULE,
                # As root, nginx's workers would otherwise switch to a user who cannot write
                # this folder.
                user="user root;" if os.geteuid() == 0 else "",
                folder=self.workdir,
                host=self.host,
                port=self.port,
            )
        )
        return [nginx_binary(), "-c", str(conf), "-p", str(self.workdir)]

    def publish_request(self, channel, marker_text, kind):
        body = json.dumps(payload(marker_text), separators=(",", ":")).encode()
        headers = [("X-EventSource-Event", "qr_payment")]
        return http_request("POST", f"/publish?channel={channel}", body, headers)


class SseStarletteServer(Yardstick):
    """sse-starlette on uvicorn (uvloop, httptools): the asyncio peer (sse_starlette_app.py)."""

    name = "sse-starlette"
    probe_path = "/probe"

    def command(self):
        return [
            str(BIN / "uvicorn"),
            "bench.sse_starlette_app:app",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--backlog",
            "4096",
            "--log-level",
            "warning",
            "--no-access-log",
        ]


class FlaskSseServer(Server):
    """flask-sse 1.0.0 on gunicorn gevent; its streams each hold a Redis connection."""

    name = "flask-sse"
    has_connection_event = False
    supports_resume = False

    def __init__(self, workdir, redis_url, max_streams):
        super().__init__(workdir)
        self.redis_url = redis_url
        self.max_streams = max_streams

    def command(self):
        return [
            str(BIN / "gunicorn"),
            "--config",
            "python:bench.flask_sse_conf",
            "--bind",
            f"{self.host}:{self.port}",
            "bench.flask_sse_app:app",
        ]

    def environment(self):
        return {**os.environ, "BENCH_SSE_REDIS_URL": self.redis_url}

    def _answers(self):
        body = b'{"channel":"probe","type":"probe","data":{}}'
        headers = [("Content-Type", "application/json")]
        return self._accepts(http_request("POST", "/publish", body, headers))

    def stream_request(self, channel, last_id=None):
        headers = [("Last-Event-ID", last_id)] if last_id else []
        return http_request("GET", f"/stream?channel={channel}", headers=headers)

    def publish_request(self, channel, marker_text, kind):
        body = {"channel": channel, "type": "qr_payment", "data": payload(marker_text)}
        raw = json.dumps(body, separators=(",", ":")).encode()
        return http_request("POST", "/publish", raw, [("Content-Type", "application/json")])


class QreventsServer(Server):
    """qrevents as deployed: ``gunicorn app:app`` with the repo's gunicorn.conf.py, beside
    the simulated bank that issues its QRs (a process of its own, not pinned)."""

    probe_path = "/health"

    def __init__(self, workdir, name, database_url=None, redis_url=None, workers=1):
        super().__init__(workdir)
        self.name = name
        self.database_url = database_url
        self.redis_url = redis_url
        self.workers = workers
        self.prefix = f"qrevents-bench-{uuid.uuid4().hex[:8]}:"
        self.bank_port = free_port()
        self.bank = None

    def start(self, timeout=30):
        log = open(self.workdir / f"{self.name}-bank.log", "ab")
        self.bank = subprocess.Popen(
            [
                str(BIN / "python"),
                "-m",
                "qrevents.simulator",
                "--bind",
                f"{self.host}:{self.bank_port}",
                "--state",
                str(self.workdir / f"{self.name}-bank.db"),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        super().start(timeout)

    def stop(self):
        super().stop()
        if self.bank is not None and self.bank.poll() is None:
            self.bank.terminate()
            self.bank.wait(10)

    def _link_to_bank(self, account_id):
        """Register a merchant at the simulated bank and link the account to it (blocking)."""
        import requests

        creds = {
            "userName": f"bench{account_id}",
            "password": uuid.uuid4().hex,
            "aesKey": uuid.uuid4().hex,
            "accountNumber": str(1_000_000 + account_id),
        }
        bank = f"http://{self.host}:{self.bank_port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.post(bank + "/simulator/accounts", json=creds, timeout=5)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        linked = requests.post(
            f"http://{self.host}:{self.port}/admin/accounts/{account_id}/bank",
            json={"adapter": "simulator", "baseUrl": bank + "/ApiGateway/", **creds},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=10,
        )
        if linked.status_code not in (200, 201):
            raise RuntimeError(f"linking account {account_id}: {linked.text[:200]}")

    def command(self):
        return [str(BIN / "gunicorn"), "app:app"]

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("QREVENTS_")}
        env.update(
            QREVENTS_INSTANCE_PATH=str(self.workdir / "instance"),
            QREVENTS_BIND=f"{self.host}:{self.port}",
            QREVENTS_JWT_SECRET_KEY="bench-jwt-secret-of-at-least-32-bytes!!",
            QREVENTS_ADMIN_API_KEY=ADMIN_KEY,
            QREVENTS_BANK_WEBHOOK_SECRET=BANK_SECRET,
            QREVENTS_SECRET_KEY="bench-secret-key-for-bank-links",
            QREVENTS_MAX_STREAMS_PER_ACCOUNT="20000",
            QREVENTS_WORKER_CONNECTIONS="19500",
            QREVENTS_LOG_LEVEL="warning",
            WEB_CONCURRENCY=str(self.workers),
        )
        if self.database_url:
            env["QREVENTS_DATABASE_URL"] = self.database_url
        if self.redis_url:
            env["QREVENTS_REDIS_URL"] = self.redis_url
            env["QREVENTS_REDIS_PREFIX"] = self.prefix
        return env

    async def setup(self, http, accounts):
        """An account, an API key and a reusable QR per channel, through the admin API."""
        import asyncio

        admin = [("Authorization", f"Bearer {ADMIN_KEY}"), ("Content-Type", "application/json")]

        async def call(method, path, body, headers):
            raw = json.dumps(body).encode()
            status, answer = await http.request(http_request(method, path, raw, headers))
            if status not in (200, 201):
                raise RuntimeError(f"{path}: {status} {answer[:200]!r}")
            return json.loads(answer)["data"]

        async def one(n):
            body = {"name": f"Bench {n}", "currency": "BOB"}
            account = await call("POST", "/admin/accounts", body, admin)
            key = await call(
                "POST", f"/admin/accounts/{account['id']}/api-keys", {"name": "bench"}, admin
            )
            await asyncio.to_thread(self._link_to_bank, account["id"])
            auth = [("Authorization", f"Bearer {key['key']}"), ("Content-Type", "application/json")]
            qr = await call(
                "POST",
                "/qr",
                {"amount": 1.00, "currency": "BOB", "description": "bench", "singleUse": False},
                auth,
            )
            return {"account": account["id"], "key": key["key"], "qr": qr["qrId"]}

        channels = []
        for start in range(0, accounts, 32):
            batch = range(start, min(accounts, start + 32))
            channels += await asyncio.gather(*(one(n) for n in batch))
        return channels

    def stream_request(self, channel, last_id=None):
        headers = [("Authorization", f"Bearer {channel['key']}"), ("Accept", "text/event-stream")]
        if last_id:
            headers.append(("Last-Event-ID", last_id))
        return http_request("GET", "/events/stream", headers=headers)

    def publish_request(self, channel, marker_text, kind):
        """``fanout``: a new QR (``qr_created``); ``payment``: a signed bank payment."""
        if kind == "fanout":
            body = {"amount": 1.00, "currency": "BOB", "description": marker_text}
            headers = [("Authorization", f"Bearer {channel['key']}")]
            path = "/qr"
        else:
            body = bank_notice(channel["qr"], marker_text)
            path = "/bank/payments"
            headers = []
        raw = json.dumps(body, separators=(",", ":")).encode()
        if kind != "fanout":
            headers = [("X-Bank-Signature", bank_signature(BANK_SECRET, raw))]
        headers.append(("Content-Type", "application/json"))
        return http_request("POST", path, raw, headers)
