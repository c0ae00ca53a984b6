"""What must hold after the run: nothing lost, nothing twice, the books balanced.

- Every stream got every durable event of its account exactly once and in order: its ids
  are the server's replay of the account's log after the run's boundary, one for one.
- Every payment acknowledged (2xx, ``responseCode`` 0) is in the ledger; every payment the
  bank made is in the ledger once the bank's reconciliation ran, and no other.
- Balance equals the sum of the movements, one movement per payment, event sequences
  1..n with no gap (``tests/ledger_check.py``, the suite's own reading of the database).
"""

from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

from tests.ledger_check import _rows, assert_ledger_invariants


@dataclass
class Verdict:
    violations: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def fail(self, text):
        self.violations.append(text)


def check_streams(verdict, fleet, reference):
    """``reference``: account -> the ids the server replays after the boundary."""
    perfect = 0
    for stream in fleet.streams:
        expected = reference[stream.account]
        got = stream.ids
        where = f"stream {stream.number} (account {stream.account})"
        if got == expected:
            perfect += 1
        else:
            seen = set(got)
            missing = [i for i in expected if i not in seen]
            repeated = sorted(i for i, n in Counter(got).items() if n > 1)
            foreign = sorted(seen - set(expected))
            in_order = [i for i in got if i in set(expected)]
            out_of_order = in_order != [i for i in expected if i in seen]
            verdict.fail(
                f"{where}: {len(got)} events for {len(expected)}: {len(missing)} missing "
                f"{missing[:3]}, {len(got) - len(seen)} repeated {repeated[:3]}, "
                f"{len(foreign)} unknown {foreign[:3]}, "
                f"{'out of order' if out_of_order else 'in order'}"
            )
        for status, count in stream.refusals.items():
            verdict.fail(f"{where}: answered HTTP {status} {count} time(s) (a browser gives up)")
        for resync in stream.resyncs:
            verdict.fail(f"{where}: resync_required {resync}")
    verdict.figures["streams exact"] = f"{perfect} of {len(fleet.streams)}"


def check_partitions(verdict, partitions):
    """A host cut from Redis for 20 s must notice: a hung pub/sub connection is not a closed
    one, and a worker that believes it listens neither reconnects nor says it is unhealthy."""
    for host, noticed in partitions:
        if not noticed:
            verdict.fail(f"host {host}: its Redis listeners never noticed a 20 s partition")


def ledger_payments(database_url, account_id):
    server = SimpleNamespace(env={"QREVENTS_DATABASE_URL": database_url})
    rows = _rows(server, "SELECT transaction_id FROM payment WHERE account_id = %s", (account_id,))
    return [t for (t,) in rows]


def check_acknowledged(verdict, payments, database_url):
    """Before any reconciliation: each acknowledged notification's payment is recorded."""
    lost = 0
    for account_id, acked in payments.acknowledged.items():
        recorded = set(ledger_payments(database_url, account_id))
        for transaction_id in sorted(acked - recorded):
            lost += 1
            verdict.fail(
                f"account {account_id}: payment {transaction_id} acknowledged, not in ledger"
            )
    verdict.figures["acknowledged, not in ledger"] = lost


def check_books(verdict, bank_payments, database_url):
    """After reconciliation: the ledger holds exactly the bank's payments, and balances.

    ``bank_payments``: account -> the transactionIds the bank lists for its QR (those whose
    pay call got no answer included)."""
    server = SimpleNamespace(env={"QREVENTS_DATABASE_URL": database_url})
    recorded_in_all = 0
    for account_id, at_bank in bank_payments.items():
        recorded = ledger_payments(database_url, account_id)
        recorded_in_all += len(recorded)
        if len(recorded) != len(set(recorded)):
            verdict.fail(f"account {account_id}: a payment recorded twice")
        missing, unknown = set(at_bank) - set(recorded), set(recorded) - set(at_bank)
        if missing:
            verdict.fail(f"account {account_id}: bank payments not in ledger: {sorted(missing)}")
        if unknown:
            verdict.fail(f"account {account_id}: payments the bank never made: {sorted(unknown)}")
        try:
            assert_ledger_invariants(server, SimpleNamespace(account_id=account_id))
        except AssertionError as exc:
            verdict.fail(f"account {account_id}: ledger invariant broken: {exc}")
    verdict.figures["payments in the ledger"] = recorded_in_all
