"""Webhook delivery lag: payments at a fixed rate to one account with N endpoints.

    .venv/bin/python -m bench.webhook_lag --rate 100 --seconds 20 --endpoints 10 \\
        [--postgres postgresql://host/db] [--redis-url redis://... --workers 2]

Starts qrevents (gunicorn, as shipped) and one receiver process (gevent's WSGI server, every
endpoint a path of it), pays multi-use QRs made beforehand (so only the payments' events,
``qr_payment`` and ``account_balance_update``, flow during the measurement) at ``--rate`` bank
callbacks a second, and
prints the lag from each event's commit (its ``createdAt``, milliseconds) to its arrival at
each endpoint: p50, p90, p99, max, and how many deliveries arrived. Endpoints receive
``qr_payment`` only unless ``--all-events``. Loopback only.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

from .servers import ADMIN_KEY, BANK_SECRET, bank_signature, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

RECEIVER = r"""
import json, sys, time
from gevent.pywsgi import WSGIServer

arrivals = []

def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "GET":
        body = json.dumps(arrivals).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    raw = environ["wsgi.input"].read()
    now = time.time()
    event = json.loads(raw)
    arrivals.append([environ["PATH_INFO"], event["id"], event["createdAt"], now])
    start_response("204 No Content", [])
    return [b""]

WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=None).serve_forever()
"""


def fresh_postgres(admin_url):
    """A database of the bench's own on the PostgreSQL server ``admin_url`` names."""
    import psycopg2

    name = "qrevents_bench_" + uuid.uuid4().hex[:10]
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return name, admin_url.rsplit("/", 1)[0] + "/" + name


def drop_postgres(admin_url, name):
    import psycopg2

    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def start_qrevents(tmp, args, database_url):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QREVENTS_")}
    env.update(
        QREVENTS_BIND=f"127.0.0.1:{port}",
        QREVENTS_INSTANCE_PATH=str(tmp / "instance"),
        QREVENTS_DATABASE_URL=database_url or f"sqlite:///{tmp / 'bench.db'}",
        QREVENTS_JWT_SECRET_KEY="bench-jwt-secret-of-at-least-32-bytes!!",
        QREVENTS_ADMIN_API_KEY=ADMIN_KEY,
        QREVENTS_BANK_WEBHOOK_SECRET=BANK_SECRET,
        QREVENTS_WEBHOOK_ALLOW_PRIVATE="1",  # the receiver is on loopback
        QREVENTS_LOGIN_LIMIT_PER_ADDRESS="off",
        QREVENTS_API_RATE_LIMIT="off",
        WEB_CONCURRENCY=str(args.workers),
    )
    if args.redis_url:
        env["QREVENTS_REDIS_URL"] = args.redis_url
        env["QREVENTS_REDIS_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}:"
    log = open(tmp / "qrevents.log", "wb")
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "app:app"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    _wait(base + "/health")
    return process, base


def _wait(url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code in (200, 204):
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def admin(base, path, body):
    response = requests.post(
        base + path, json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()["data"]


def start_bank(tmp):
    """The simulated bank every QR is issued by (``qrevents.simulator``); its base URL."""
    port = free_port()
    log = open(tmp / "bank.log", "wb")
    process = subprocess.Popen(
        [
            str(BIN / "python"),
            "-m",
            "qrevents.simulator",
            "--bind",
            f"127.0.0.1:{port}",
            "--state",
            str(tmp / "bank.db"),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, f"http://127.0.0.1:{port}"


def link_bank(base, bank, account_id):
    creds = {
        "userName": f"bench{account_id}",
        "password": uuid.uuid4().hex,
        "aesKey": uuid.uuid4().hex,
        "accountNumber": str(1_000_000 + account_id),
    }
    deadline = time.monotonic() + 15
    while True:
        try:
            requests.post(bank + "/simulator/accounts", json=creds, timeout=5).raise_for_status()
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    admin(
        base,
        f"/admin/accounts/{account_id}/bank",
        {"adapter": "simulator", "baseUrl": bank + "/ApiGateway/", **creds},
    )


def setup_account(base, bank, args, receiver_port):
    account = admin(base, "/admin/accounts", {"name": "Bench", "currency": "BOB"})
    link_bank(base, bank, account["id"])
    email = f"bench{uuid.uuid4().hex[:8]}@example.com"
    admin(
        base,
        f"/admin/accounts/{account['id']}/users",
        {"email": email, "password": "bench password 1", "name": "Bench"},
    )
    jwt = requests.post(
        base + "/auth/login", json={"email": email, "password": "bench password 1"}, timeout=10
    ).json()["data"]["accessToken"]
    key = admin(base, f"/admin/accounts/{account['id']}/api-keys", {"name": "bench"})["key"]
    qrs = []
    for _ in range(args.threads):
        response = requests.post(
            base + "/qr",
            json={"amount": 1, "currency": "BOB", "description": "bench", "singleUse": False},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        response.raise_for_status()
        qrs.append(response.json()["data"]["qrId"])
    events = None if args.all_events else ["qr_payment"]
    for index in range(args.endpoints):
        response = requests.post(
            base + "/webhooks",
            json={"url": f"http://127.0.0.1:{receiver_port}/e{index}", "events": events},
            headers={"Authorization": f"Bearer {jwt}"},
            timeout=10,
        )
        response.raise_for_status()
    return qrs


def pay_at_rate(base, qrs, args):
    """``rate`` signed bank callbacks a second for ``seconds``, spread over threads, each
    sending on its own schedule; returns how many were acknowledged and how late it ran."""
    interval = args.threads / args.rate
    sent, behind = [0] * args.threads, [0.0] * args.threads
    start = time.monotonic() + 0.5

    def run(index):
        session = requests.Session()
        due = start + index * interval / args.threads
        end = start + args.seconds
        while due < end:
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                behind[index] = max(behind[index], -pause)
            body = json.dumps(
                {
                    "qrId": qrs[index],
                    "transactionId": "BNK" + uuid.uuid4().hex[:20].upper(),
                    "amount": 1.00,
                    "currency": "BOB",
                    "senderName": "Bench",
                    "senderDocumentId": "1",
                    "senderAccount": "1",
                    "senderBankCode": "BANECO",
                    "paymentDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                }
            ).encode()
            response = session.post(
                base + "/bank/payments",
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Bank-Signature": bank_signature(BANK_SECRET, body),
                },
                timeout=30,
            )
            if response.status_code == 200:
                sent[index] += 1
            due += interval

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(sent), max(behind), time.monotonic() - start


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="payments a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--threads", type=int, default=8, help="load generator threads")
    parser.add_argument(
        "--postgres", metavar="URL", help="a PostgreSQL server; the bench makes its own database"
    )
    parser.add_argument("--redis-url")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--all-events", action="store_true")
    parser.add_argument("--drain-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="webhook-lag-"))
    receiver_port = free_port()
    receiver = subprocess.Popen([str(BIN / "python"), "-c", RECEIVER, str(receiver_port)])
    database_name, database_url = fresh_postgres(args.postgres) if args.postgres else (None, None)
    bank_process, bank = start_bank(tmp)
    server, base = start_qrevents(tmp, args, database_url)
    try:
        _wait(f"http://127.0.0.1:{receiver_port}/")
        qrs = setup_account(base, bank, args, receiver_port)
        paid, behind, took = pay_at_rate(base, qrs, args)
        expected = paid * args.endpoints * (2 if args.all_events else 1)
        deadline = time.monotonic() + args.drain_seconds
        while True:
            arrivals = requests.get(f"http://127.0.0.1:{receiver_port}/", timeout=30).json()
            if len(arrivals) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        lags = [
            (arrived - datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()) * 1000
            for _, _, created, arrived in arrivals
        ]
        unique = {(path, event_id) for path, event_id, _, _ in arrivals}
        report = {
            "rate": args.rate,
            "seconds": args.seconds,
            "endpoints": args.endpoints,
            "workers": args.workers,
            "database": "postgresql" if args.postgres else "sqlite",
            "payments_acknowledged": paid,
            "payments_per_second_achieved": round(paid / took, 1),
            "load_generator_late_ms": round(behind * 1000, 1),
            "deliveries_expected": expected,
            "deliveries_arrived": len(arrivals),
            "duplicates": len(arrivals) - len(unique),
            "lag_ms": {
                "p50": round(percentile(lags, 0.5), 1),
                "p90": round(percentile(lags, 0.9), 1),
                "p99": round(percentile(lags, 0.99), 1),
                "max": round(max(lags), 1),
            }
            if lags
            else None,
        }
        print(json.dumps(report, indent=2))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
        receiver.terminate()
        receiver.wait(5)
        bank_process.terminate()
        bank_process.wait(5)
        if database_name:
            drop_postgres(args.postgres, database_name)


if __name__ == "__main__":
    main()
