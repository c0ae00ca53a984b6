"""``deploy/nginx.conf`` run by a real nginx in front of a real server.

The test's config is the shipped one with only its addresses and file paths moved into the
test's folder (ports, logs, pid, temp files); every proxy rule is the file's own.
"""

import http.client
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import missing_service
from tests.live import ROOT, Api, LiveServer, free_port
from tests.test_multiworker import wait_for

CONF = ROOT / "deploy" / "nginx.conf"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary():
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
    )


def derived_config(folder, upstream_port, listen_port, tls_port):
    """The shipped config, listening, logging and finding its certificate where a test may."""
    text = CONF.read_text()
    text = text.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
    text = text.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{tls_port} ssl http2;")
    text = text.replace("/etc/ssl/qrevents/", f"{folder}/")
    text = text.replace("/var/log/nginx/", f"{folder}/")
    temp_paths = "".join(f"    {name}_temp_path {folder}/{name};\n" for name in TEMP_DIRS)
    return text.replace("http {\n", "http {\n" + temp_paths, 1)


def self_signed_certificate(folder):
    """``fullchain.pem`` and ``privkey.pem`` for 127.0.0.1, valid one day (openssl CLI)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(folder / "privkey.pem"), "-out", str(folder / "fullchain.pem")],
        check=True,
        capture_output=True,
    )


class Nginx:
    """nginx in the foreground with the derived config; stopped with its process."""

    def __init__(self, folder, upstream_port):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tls_base = f"https://127.0.0.1:{self.tls_port}"
        self.conf = self.folder / "nginx.conf"
        self_signed_certificate(self.folder)
        self.conf.write_text(derived_config(self.folder, upstream_port, self.port, self.tls_port))
        self.process = None

    def _spawn(self):
        # As root, workers would switch to "nobody", who may not enter the test's folder.
        directives = f"daemon off; pid {self.folder}/nginx.pid;"
        if os.geteuid() == 0:
            directives += " user root;"
        self.process = subprocess.Popen(
            [nginx_binary(), "-p", str(self.folder), "-e", str(self.folder / "startup.log")]
            + ["-c", str(self.conf), "-g", directives],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def start(self):
        self._spawn()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.errors()}")
            try:
                requests.get(self.base + "/health", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not answer: {self.errors()}")

    def start_without_upstream(self):
        """Start when no upstream answers (start() waits for /health through it)."""
        self._spawn()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                requests.get(self.base + "/", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not answer: {self.errors()}")

    def errors(self):
        logs = [self.folder / "startup.log", self.folder / "qrevents.error.log"]
        return "".join(path.read_text() for path in logs if path.exists())

    def access_log(self):
        return (self.folder / "qrevents.access.log").read_text()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish, then exit
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    if nginx_binary() is None:
        missing_service("the nginx tests need nginx (Debian's nginx-light; .ci/run installs it)")
    tmp = tmp_path_factory.mktemp("nginx")
    server = LiveServer(tmp / "server", f"sqlite:///{tmp / 'qrevents.db'}").start()
    nginx = Nginx(tmp, server.port)
    try:
        yield nginx.start()
    finally:
        nginx.stop()
        server.stop()


@pytest.fixture
def api(proxy):
    api = Api(proxy.base)
    yield api
    api.session.close()


def test_shipped_config_follows_the_rules_for_sse():
    text = re.sub(r"#.*", "", CONF.read_text())  # directives only
    stream_block = text[text.index("location ~ ^/(api/)?events/stream$") :]
    stream_block = stream_block[: stream_block.index("}")]
    assert "upgrade" not in text.lower()
    assert "proxy_buffering off;" in stream_block and "gzip off;" in stream_block
    assert 'proxy_set_header Connection "";' in text and "proxy_http_version 1.1;" in text
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", stream_block).group(1))
    assert read_timeout > 2 * 30  # above the default heartbeat, with room for one miss
    assert "proxy_set_header" not in stream_block  # it would drop the server's headers
    assert "error_page 502 503 504 = @closed;" in stream_block
    assert "proxy_intercept_errors on;" in stream_block  # the upstream's own 503 too
    assert re.search(r"proxy_next_upstream error timeout http_502 http_503 http_504;", text)
    closed = text[text.index("location @closed") :]
    assert closed[: closed.index("}")].split("{")[1].split() == ["return", "444;"]
    assert "listen 443 ssl http2;" in text


def test_a_stream_that_finds_no_upstream_gets_its_connection_closed_not_a_502(tmp_path):
    """An EventSource gives up for good on a 502; on a closed connection it retries."""
    nobody = free_port()  # nothing listens there: the upstream is down
    nginx = Nginx(tmp_path, nobody).start_without_upstream()
    try:
        with pytest.raises(http.client.RemoteDisconnected):
            Api(nginx.base).stream(params={"api-key": "qrk_whatever"})
        assert requests.get(nginx.base + "/health", timeout=5).status_code == 502  # REST: as is
    finally:
        nginx.stop()


def test_a_bad_credential_still_gets_its_401_through_the_proxy(api):
    with api.stream(params={"api-key": "qrk_nope"}) as stream:
        assert stream.status == 401
        assert stream.body_json()["error"]["code"] == "invalid_credentials"


def test_the_stream_over_http2_and_tls_delivers_events_at_once(proxy, api):
    tenant = api.new_tenant()
    url = f"{proxy.tls_base}/events/stream?api-key={tenant.api_key}"
    curl = subprocess.Popen(
        ["curl", "-sS", "-N", "-k", "--http2", "-w", "\nhttp_version=%{http_version}\n", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = iter(curl.stdout.readline, "")
        assert next(line for line in lines if line.startswith("event:")) == "event: connection\n"
        qr = api.create_qr(tenant)
        created = next(line for line in lines if line.startswith("id:"))
        assert created == f"id: qr_created_{qr['qrId']}\n"
        # A closed stream ends curl cleanly: revoke the key and read to the end.
        login = bearer_headers(tenant.jwt)
        assert api.delete(f"/api-keys/{tenant.api_key_id}", headers=login).status_code == 200
        rest = "".join(lines)
    finally:
        curl.kill()
        curl.wait()
    assert '"reason":"key_revoked"' in rest
    assert "http_version=2" in rest


def bearer_headers(credential):
    return {"Authorization": f"Bearer {credential}"}


def test_first_event_passes_the_proxy_at_once_and_heartbeats_follow(api):
    tenant = api.new_tenant()
    with api.stream(tenant) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Encoding" not in stream.headers
        assert stream.next(timeout=1).event == "connection"
        beats = [stream.next(timeout=1).event for _ in range(3)]
        qr = api.create_qr(tenant)
        written = time.monotonic()
        (created,) = stream.take(1, timeout=1)
        latency = time.monotonic() - written
    assert beats == ["heartbeat"] * 3
    assert created.id == f"qr_created_{qr['qrId']}"
    assert latency < 0.25  # one small frame, not a buffer's worth


@pytest.mark.parametrize("how", ["header", "query"])
def test_resume_works_through_the_proxy(api, how):
    tenant = api.new_tenant()
    with api.stream(tenant) as stream:
        stream.next()
        first = api.create_qr(tenant)
        (seen,) = stream.take(1)
    missed = api.create_qr(tenant)
    resume = (
        {"headers": {**tenant.headers, "Last-Event-ID": seen.id}}
        if how == "header"
        else {"headers": tenant.headers, "params": {"lastEventId": seen.id}}
    )
    with api.stream(**resume) as again:
        connection = again.next()
        (replayed,) = again.take(1)
    assert seen.id == f"qr_created_{first['qrId']}"
    assert connection.data["resumed"] is True and connection.data["replayed"] == 1
    assert replayed.id == f"qr_created_{missed['qrId']}"


def test_json_is_compressed_but_the_stream_never(api):
    tenant = api.new_tenant()
    for _ in range(3):
        api.create_qr(tenant)
    listed = api.get("/qr", headers={**tenant.headers, "Accept-Encoding": "gzip"})
    assert listed.headers.get("Content-Encoding") == "gzip"
    with api.stream(headers={**tenant.headers, "Accept-Encoding": "gzip"}) as stream:
        assert "Content-Encoding" not in stream.headers
        assert stream.next().event == "connection"


def test_credentials_in_the_query_never_reach_the_proxys_access_log(proxy, api):
    tenant = api.new_tenant()
    with api.stream(params={"api-key": tenant.api_key, "token": tenant.jwt}) as stream:
        assert stream.next().event == "connection"
    # nginx writes the line when the stream ends, just after the client leaves.
    assert wait_for(lambda: "GET /events/stream HTTP/1.1" in proxy.access_log(), timeout=3)
    log = proxy.access_log()
    assert tenant.api_key not in log and tenant.jwt not in log
