"""``python -m chaos``: the chaos run of ``make chaos`` (as root: it makes network namespaces).

Set-up, load, faults for ``--seconds``, then the checks; exit status 1 on any violation.
"""

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

import requests

from tests.live import ADMIN_KEY, dumps

from . import checks, report
from .faults import KINDS, Faults, Timeline, schedule
from .load import BankPayments, HttpPool, StreamFleet, replay_of
from .services import Bank, Nginx, Postgres, Redis, ServerHost, wait_until
from .topology import SERVICE_ADDRESS, create_hosts

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HEARTBEAT_SECONDS = 5  # streams treat three missed heartbeats as a dead connection
# The hosts' settings: the shipped defaults, but for the heartbeat and the limits meant for
# the internet (every stream and payment of the run comes from one address).
HOST_SETTINGS = {
    "heartbeat_seconds": HEARTBEAT_SECONDS,
    "api_rate_limit": "off",
    "auth_failure_limit_per_address": "off",
    "auth_failure_limit_per_account": "off",
    "login_limit_per_address": "off",
}


@dataclass
class Tenant:
    account_id: int
    api_key: str
    qr_id: str

    @property
    def boundary_id(self):
        """The account's last event before the load: streams start after it."""
        return f"qr_created_{self.qr_id}"


class Run:
    """Everything one run started, stopped in reverse order."""

    def __init__(self, folder):
        self.folder = folder
        self.hosts = []
        self.postgres = self.redis = self.bank = self.nginx = self.fleet = None
        self.servers = []
        self.partitions = []  # (host name, listener warnings during the partition)

    def start(self):
        self.hosts = create_hosts()
        self.postgres = Postgres(self.folder).start()
        self.redis = Redis(self.folder).start()
        self.bank = Bank(self.folder).start()
        self.servers = [
            ServerHost(self.folder, host, self.postgres, self.redis, HOST_SETTINGS)
            for host in self.hosts
        ]
        self.servers[0].migrate()
        for server in self.servers:
            server.start()
        self.nginx = Nginx(self.folder, self.hosts).start()
        self.front = f"http://127.0.0.1:{self.nginx.port}"

    def stop(self):
        for service in (self.nginx, *self.servers, self.bank, self.redis, self.postgres):
            if service is not None:
                try:
                    service.stop()
                except Exception as exc:  # keep stopping the rest
                    print(f"chaos: stopping {service}: {exc!r}", file=sys.stderr)
        for host in self.hosts:
            host.destroy()


def new_tenant(run, number):
    """An account with an API key, a link to the bank and one reusable QR."""
    session = requests.Session()

    def admin(path, body):
        response = session.post(run.front + path, json=body, headers=ADMIN, timeout=30)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()["data"]

    account = admin("/admin/accounts", {"name": f"Comercio {number}", "currency": "BOB"})
    key = admin(f"/admin/accounts/{account['id']}/api-keys", {"name": "caos"})
    creds = {
        "userName": f"m{uuid.uuid4().hex[:12]}",
        "password": f"clave-{uuid.uuid4().hex[:8]}",
        "aesKey": uuid.uuid4().hex,
        "accountNumber": str(uuid.uuid4().int)[:10],
    }
    response = session.post(run.bank.root + "/simulator/accounts", json=creds, timeout=30)
    assert response.status_code == 201, response.text
    admin(
        f"/admin/accounts/{account['id']}/bank",
        {"adapter": "simulator", "baseUrl": run.bank.base_url, **creds},
    )
    body = {"amount": Decimal(f"{1 + number % 50}.25"), "currency": "BOB",
            "description": "Caja", "singleUse": False}  # fmt: skip
    response = session.post(
        run.front + "/qr",
        data=dumps(body),
        headers={"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return Tenant(account["id"], key["key"], response.json()["data"]["qrId"])


async def drive(run, args, tenants, rng):
    """Load and faults for ``args.seconds``, then settle and read what every stream got."""
    fleet = run.fleet = StreamFleet(
        tenants, args.streams // args.accounts, "127.0.0.1", run.nginx.port,
        silence=3 * HEARTBEAT_SECONDS,
    )  # fmt: skip
    fleet.start()
    deadline = time.monotonic() + 300  # refused while "overloaded", a stream retries later
    while any(s.connections == 0 for s in fleet.streams):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {fleet.open_count()} streams opened in 300 s")
        await asyncio.sleep(0.5)
    timeline = Timeline()
    timeline.note("load", f"{fleet.open_count()} streams open; payments start")
    payments = BankPayments(
        HttpPool(SERVICE_ADDRESS, run.bank.port, 64),
        HttpPool("127.0.0.1", run.nginx.port, 64),
        tenants,
        args.rate,
    )
    faults = Faults(run, rng, timeline)
    plan = schedule(args.seconds, rng, kinds=args.faults) if args.faults else []
    await asyncio.gather(payments.run(args.seconds, rng), faults.play(plan))
    timeline.note("load", f"payments stop ({payments.in_flight} still being notified)")
    await payments.drain(payments.attempts * payments.interval + 30)
    await asyncio.to_thread(_wait_healthy, run)

    verdict = checks.Verdict()
    checks.check_acknowledged(verdict, payments, run.postgres.url("127.0.0.1"))
    gate = asyncio.Semaphore(20)

    async def reference_of(tenant):
        async with gate:
            ids = await replay_of("127.0.0.1", run.nginx.port, tenant.api_key, tenant.boundary_id)
            return tenant.account_id, ids

    reference = dict(await asyncio.gather(*(reference_of(t) for t in tenants)))
    settle = time.monotonic() + 60  # a stream may be waiting out its retry: let it come back
    while time.monotonic() < settle and any(
        s.ids[-1:] != reference[s.account][-1:] for s in fleet.streams
    ):
        await asyncio.sleep(0.5)
    timeline.note("load", f"streams settled; {fleet.open_count()} open")
    fleet.stop()
    checks.check_streams(verdict, fleet, reference)
    checks.check_partitions(verdict, run.partitions)
    return timeline, payments, verdict


def _wait_healthy(run):
    for server in run.servers:
        wait_until(lambda s=server: requests.get(s.base + "/health", timeout=2).ok, s_name(server))


def s_name(server):
    return f"host {server.host.name}"


def bank_payments_by_account(run, tenants):
    response = requests.get(run.bank.root + "/simulator/qrs", timeout=60)
    response.raise_for_status()
    by_qr = {
        qr["qrId"]: [p["transactionId"] for p in qr["payments"]] for qr in response.json()["qrs"]
    }
    return {t.account_id: by_qr.get(t.qr_id, []) for t in tenants}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("CHAOS_SECONDS", 300))
    )
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="payments per second")
    parser.add_argument(
        "--random",
        type=int,
        help="where the random draws start (each run prints it: to replay one)",
    )
    parser.add_argument("--report", help="also write the report (markdown) to this file")
    parser.add_argument(
        "--faults",
        type=lambda text: [k for k in text.split(",") if k],
        default=list(KINDS),
        help=f"the kinds drawn, comma-separated (default: all of {','.join(KINDS)}; '': none)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's folder and logs")
    args = parser.parse_args(argv)
    unknown = set(args.faults) - set(KINDS)
    if unknown:
        parser.error(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    if args.random is None:
        args.random = random.SystemRandom().randrange(1 << 32)
    return args


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("make chaos runs as root: it creates network namespaces (ip netns, iptables)")
    for tool in ("ip", "iptables", "redis-server", "nginx", "runuser"):
        if shutil.which(tool) is None:
            sys.exit(f"make chaos needs {tool}")
    rng = random.Random(args.random)
    folder = tempfile.mkdtemp(prefix="qrevents-chaos-")
    os.chmod(folder, 0o755)  # PostgreSQL runs as its own user inside it
    run = Run(folder)
    failed = True
    try:
        print(f"chaos: starting services in {folder} (random draws from {args.random})", flush=True)
        run.start()
        with ThreadPoolExecutor(8) as pool:
            tenants = list(pool.map(lambda n: new_tenant(run, n), range(args.accounts)))
        print(
            f"chaos: {len(tenants)} accounts ready; {args.seconds:g} s of load and faults",
            flush=True,
        )
        timeline, payments, verdict = asyncio.run(drive(run, args, tenants, rng))
        reconciled = run.servers[0].reconcile_with_bank().strip().splitlines()
        print("chaos: bank-reconcile:", (reconciled or ["(no output)"])[-1], flush=True)
        checks.check_books(
            verdict, bank_payments_by_account(run, tenants), run.postgres.url("127.0.0.1")
        )
        text = report.summary(args, timeline, run.fleet, payments, verdict, run.partitions)
        print(text)
        if args.report:
            with open(args.report, "w") as out:
                out.write(text + "\n")
        failed = bool(verdict.violations)
    finally:
        run.stop()
        if failed or args.keep:
            print(f"chaos: logs kept in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
