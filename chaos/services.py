"""The private services of one chaos run, each started on a free port and stopped at the end.

PostgreSQL (``initdb`` in the run's folder, run as the ``postgres`` user since it refuses
root), Redis, the simulated bank, a qrevents server host (gunicorn as ``make run`` starts
it, inside its namespace) and nginx with the shipped config. None touches the machine's own.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.live import ADMIN_KEY, BANK_SECRET, ROOT, free_port
from tests.test_nginx import derived_config, nginx_binary, self_signed_certificate

from .topology import SERVICE_ADDRESS

BIN = Path(sys.executable).parent
SERVER_PORT = 8000  # every host's own address, so the same port on each


def wait_until(ready, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {timeout} s")


class Postgres:
    """A throw-away cluster listening on loopback and on the hosts' service address."""

    def __init__(self, folder):
        self.folder = Path(folder) / "postgres"
        self.port = free_port()
        self.bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
        self.log = self.folder.parent / "postgres.log"

    def _as_postgres(self, *command, check=True):
        user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        prefix = ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, check=check)

    def start(self):
        self.folder.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.folder), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--no-sync")  # fmt: skip
        with open(self.folder / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1,{SERVICE_ADDRESS}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.folder}'\nmax_connections = 300\n"
            )
        with open(self.folder / "pg_hba.conf", "a") as hba:
            hba.write("host all all 10.231.0.0/16 trust\n")
        self._pg_ctl("start", "-w")
        self._as_postgres(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                          "-U", "postgres", "qrevents")  # fmt: skip
        return self

    def _pg_ctl(self, *args, check=True):
        return self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.folder),
            "-l",
            str(self.log),
            *args,
            check=check,
        )

    def restart(self, mode):
        """``fast`` (clients told, a checkpoint) or ``immediate`` (as a crash)."""
        self._pg_ctl("restart", "-w", "-m", mode)

    def stop(self):
        self._pg_ctl("stop", "-m", "immediate", check=False)

    def url(self, host=SERVICE_ADDRESS):
        return f"postgresql://postgres@{host}:{self.port}/qrevents"


class Redis:
    """redis-server without persistence: a restart loses everything, as a crash would."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.port = free_port()
        self.process = None

    def start(self):
        log = open(self.folder / "redis.log", "ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                SERVICE_ADDRESS,
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],  # fmt: skip
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self._answers, "redis")
        return self

    def _answers(self):
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self, signum=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(10)

    def url(self):
        return f"redis://{SERVICE_ADDRESS}:{self.port}/0"


class Bank:
    """``python -m qrevents.simulator`` on the service address."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.port = free_port()
        self.root = f"http://{SERVICE_ADDRESS}:{self.port}"
        self.base_url = self.root + "/ApiGateway/"
        self.process = None

    def start(self):
        log = open(self.folder / "bank.log", "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qrevents.simulator",
                "--bind",
                f"{SERVICE_ADDRESS}:{self.port}",
                "--state",
                str(self.folder / "bank.db"),
            ],  # fmt: skip
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(
            lambda: requests.get(self.root + "/simulator/requests", timeout=1).ok, "the bank"
        )
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class ServerHost:
    """gunicorn (gunicorn.conf.py, two gevent workers) inside one host's namespace."""

    def __init__(self, folder, host, postgres, redis, settings):
        self.host = host
        self.folder = Path(folder) / f"host-{host.name}"
        self.folder.mkdir(parents=True)
        self.base = f"http://{host.address}:{SERVER_PORT}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("QREVENTS_")}
        env.update(
            QREVENTS_INSTANCE_PATH=str(self.folder / "instance"),
            QREVENTS_BIND=f"{host.address}:{SERVER_PORT}",
            QREVENTS_DATABASE_URL=postgres.url(),
            QREVENTS_REDIS_URL=redis.url(),
            QREVENTS_JWT_SECRET_KEY="chaos-jwt-secret-of-at-least-32-bytes!!",
            QREVENTS_ADMIN_API_KEY=ADMIN_KEY,
            QREVENTS_BANK_WEBHOOK_SECRET=BANK_SECRET,
            QREVENTS_SECRET_KEY="chaos-secret-key-for-bank-links",
            WEB_CONCURRENCY="2",
        )
        env.update({f"QREVENTS_{name.upper()}": str(value) for name, value in settings.items()})
        self.env = env
        self.process = None

    def command(self, *args):
        return [*self.host.exec_prefix(), *args]

    def migrate(self):
        subprocess.run(
            self.command(str(BIN / "flask"), "--app", "app", "migrate"),
            cwd=ROOT, env=self.env, check=True, capture_output=True,
        )  # fmt: skip

    def reconcile_with_bank(self):
        """``flask bank-reconcile`` on this host: what the periodic round would record."""
        done = subprocess.run(
            self.command(str(BIN / "flask"), "--app", "app", "bank-reconcile"),
            cwd=ROOT, env=self.env, capture_output=True, text=True,
        )  # fmt: skip
        return done.stdout + done.stderr

    def start(self):
        log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(
            self.command(str(BIN / "gunicorn"), "app:app"),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(lambda: requests.get(self.base + "/health", timeout=1).ok, self.base)
        return self

    def worker_pids(self):
        pid = self.process.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def log(self):
        return (self.folder / "server.log").read_text(errors="replace")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Nginx:
    """nginx with ``deploy/nginx.conf``, its upstream being both hosts; on loopback."""

    def __init__(self, folder, hosts):
        self.folder = Path(folder) / "nginx"
        self.folder.mkdir(parents=True)
        self.port = free_port()
        self_signed_certificate(self.folder)
        text = derived_config(self.folder, 0, self.port, free_port())
        upstreams = "".join(f"server {h.address}:{SERVER_PORT}; " for h in hosts)
        self.conf = self.folder / "nginx.conf"
        self.conf.write_text(text.replace("server 127.0.0.1:0;", upstreams.strip()))
        self.process = None

    def start(self):
        directives = f"daemon off; pid {self.folder}/nginx.pid;"
        if os.geteuid() == 0:
            directives += " user root;"
        self.process = subprocess.Popen(
            [
                nginx_binary(),
                "-p",
                str(self.folder),
                "-e",
                str(self.folder / "startup.log"),
                "-c",
                str(self.conf),
                "-g",
                directives,
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{self.port}/health", timeout=1).ok, "nginx"
        )
        return self

    def reload(self):
        self.process.send_signal(signal.SIGHUP)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
