"""``python -m bench.event_path TREE...``: the event path's CPU, in process, tree beside tree.

For comparing two checkouts of qrevents (a base commit's and a change's) back to back on one
machine: each repetition runs every tree once, in its own subprocess, alternating; medians
and minima are printed, with the ratio of medians to the first tree. Measured with the app's
own services, hub and stream route on a SQLite file (no HTTP server, no load generator):

Each figure is the least of many samples within a run (the estimate a busy machine disturbs
least), then the median over repetitions:

- ``payment_ms``: wall time of one payment (``post_payment``: three events) with no stream;
- ``payment_cpu_ms``: its CPU time;
- ``delivery_us``: CPU per event delivered to a stream, from the payment's CPU with
  ``STREAMS`` attached streams (socket pairs, drained untimed) minus that without, over
  ``3 * STREAMS`` deliveries;
- ``record_us`` and ``fanout_us``: CPU, without the database, of recording one event in a
  change (``AccountChange.record``) and handing it to the hub, with no stream (per event) and
  with ``STREAMS`` attached streams (per delivery, the record's share removed);
- ``new_stream_ms``: CPU of one stream's handshake and preamble (``GET /events/stream``,
  first chunk), and ``resume_ms`` the same resuming ten events back (the replay read).
"""

import json
import statistics
import subprocess
import sys
from pathlib import Path

STREAMS = 200
PAYMENTS = 60
OPENS = 150

MEASURE = r"""
import json, os, socket, sys, tempfile, time
from datetime import datetime

os.environ["QREVENTS_INSTANCE_PATH"] = tempfile.mkdtemp()
os.environ["QREVENTS_DATABASE_URL"] = "sqlite:///" + tempfile.mkdtemp() + "/bench.db"
import logging
logging.disable(logging.CRITICAL)
from models import Event, database
from qrevents import create_app
from qrevents.services import payments
from qrevents.services.accounts import create_account, create_api_key
from qrevents.services.payments import PaymentNotice
from tests.conftest import create_test_qr

STREAMS, PAYMENTS, OPENS = (int(v) for v in sys.argv[1:4])
app = create_app()
clock, cpu = time.perf_counter, time.process_time


def pay(qr, n):
    notice = PaymentNotice(
        qr_id=qr.qr_id, transaction_id=f"BENCH{n:010d}", amount_cents=1000, currency="BOB",
        sender_name="Juan", sender_document_id="1", sender_account="2",
        sender_bank_code="B", description="", payment_date=datetime(2026, 1, 1),
        payment_time="00:00:00",
    )
    payments.post_payment(notice)


def socket_pairs(n):
    # n non-blocking (server end, client end) pairs standing for streams' connections
    pairs = [socket.socketpair() for _ in range(n)]
    for pair in pairs:
        for end in pair:
            end.setblocking(False)
    return pairs


def drain(streams):
    # read (untimed) what every stream's client has been sent
    for _, client in streams:
        while True:
            try:
                client.recv(1 << 20)
            except BlockingIOError:
                break


def payments_run(account_id, streams, first):
    qrs = [create_test_qr(account_id) for _ in range(PAYMENTS)]
    walls, cpus = [], []
    for n, qr in enumerate(qrs):
        wall0, cpu0 = clock(), cpu()
        pay(qr, first + n)
        cpus.append(cpu() - cpu0)
        walls.append(clock() - wall0)
        drain(streams)
    return min(walls), min(cpus)



with app.app_context(), database.connection_context():
    hub = app.extensions["qrevents"].hub
    account = create_account("Bench", "BOB")
    alone_wall, alone_cpu = payments_run(account.id, [], 0)
    streams = socket_pairs(STREAMS)
    subs = []
    for server_end, _ in streams:
        sub = hub.subscribe(account.id)
        sub.attach(server_end)
        subs.append(sub)
    _, fanned_cpu = payments_run(account.id, streams, PAYMENTS)
    assert all(sub.socket is not None and not sub.closing for sub in subs), "a stream fell back"
    for sub in subs:
        hub.unsubscribe(sub)
    _, key = create_api_key(account.id, "bench")
    client = app.test_client()
    tenth = Event.select(Event.event_id).where(
        (Event.account == account.id)
        & (Event.seq == Event.select(Event.seq).order_by(Event.seq.desc()).limit(1).scalar() - 10)
    ).scalar()


def open_cost(headers):
    costs = []
    for _ in range(OPENS):
        cpu0 = cpu()
        response = client.get("/events/stream", headers=headers)
        next(iter(response.response))
        response.close()
        costs.append(cpu() - cpu0)
    return min(costs)


with app.app_context():  # the stream route opens and closes its own connection
    new_stream = open_cost({"Authorization": f"Bearer {key}"})
    resume = open_cost({"Authorization": f"Bearer {key}", "Last-Event-ID": tenth})

def in_memory(streams, blocks=15, rounds=100):
    # CPU per event of record + deliver (three events a round, as a payment makes); the
    # least of several blocks, the estimate a busy machine disturbs least.
    from models import Account
    from qrevents.services.eventlog import AccountChange
    from decimal import Decimal

    with app.app_context(), database.connection_context():
        account = Account.get_by_id(account_id)
    hub = app.extensions["qrevents"].hub
    subs = []
    for server_end, _ in streams:
        sub = hub.subscribe(account.id)
        sub.attach(server_end)
        subs.append(sub)
    data = {"qrId": "26113012345678901234", "amount": Decimal("100.50"), "senderName": "Juan",
            "description": "Pago de servicios", "review": False, "reviewReason": None}
    spent = []
    for block in range(blocks):
        spent.append(0.0)
        for n in range(rounds):
            cpu0 = cpu()
            change = AccountChange(account)
            for kind in ("qr_payment", "account_balance_update", "qr_status_change"):
                change.record((kind, f"{kind}_{block}_{n}", data))
            hub.deliver(account.id, change.events)
            spent[-1] += cpu() - cpu0
            drain(streams)
    assert all(sub.socket is not None and not sub.closing for sub in subs), "a stream fell back"
    for sub in subs:
        hub.unsubscribe(sub)
    return min(spent) / (3 * rounds)


account_id = account.id
# The in-memory channel starts at the account's last seq: new accounts keep them apart.
with app.app_context(), database.connection_context():
    alone_account, fanned_account = (create_account(f"M{n}", "BOB").id for n in range(2))
account_id = alone_account
record = in_memory([])
account_id = fanned_account
fanned = in_memory(socket_pairs(STREAMS))

print(json.dumps({
    "record_us": 1e6 * record,
    "fanout_us": 1e6 * (fanned - record) / STREAMS,
    "payment_ms": 1000 * alone_wall,
    "payment_cpu_ms": 1000 * alone_cpu,
    "delivery_us": 1e6 * (fanned_cpu - alone_cpu) / (3 * STREAMS),
    "new_stream_ms": 1000 * new_stream,
    "resume_ms": 1000 * resume,
}))
"""


def measure(tree):
    """One repetition in ``tree``'s code (its own interpreter, its own temporary database)."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(STREAMS), str(PAYMENTS), str(OPENS)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{tree}: {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv):
    reps = 5
    if argv[:1] == ["--reps"]:
        reps, argv = int(argv[1]), argv[2:]
    trees = [Path(tree).resolve() for tree in argv]
    runs = {tree: [] for tree in trees}
    for _ in range(reps):
        for tree in trees:
            runs[tree].append(measure(tree))
    print(f"{reps} alternating repetitions; median [min], ratio of medians to {trees[0].name}")
    base = {
        name: statistics.median(run[name] for run in runs[trees[0]]) for name in runs[trees[0]][0]
    }
    for name in base:
        cells = []
        for tree in trees:
            values = [run[name] for run in runs[tree]]
            median = statistics.median(values)
            cells.append(f"{median:8.3f} [{min(values):8.3f}] ({median / base[name]:.3f})")
        print(f"{name:15} " + "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
