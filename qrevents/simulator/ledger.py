"""The simulated bank's books: merchants, the QRs it issued and the payments they received.

A stdlib SQLite file (or memory), one connection behind a lock: every operation is a handful
of tiny statements, so nothing waits long. Amounts are kept as exact decimal strings.
"""

import json
import secrets
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

# America/La_Paz has kept UTC-4, without daylight saving, since 1932.
LA_PAZ = timezone(timedelta(hours=-4), "America/La_Paz")

ACTIVE, PAID, CANCELLED = 0, 1, 9

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    user_name TEXT PRIMARY KEY, password TEXT NOT NULL, aes_key TEXT NOT NULL,
    account_number TEXT NOT NULL, notify_url TEXT, notify_bearer TEXT
);
CREATE TABLE IF NOT EXISTS qrs (
    qr_id TEXT PRIMARY KEY, user_name TEXT NOT NULL, transaction_id TEXT NOT NULL,
    currency TEXT NOT NULL, amount TEXT NOT NULL, description TEXT NOT NULL,
    due_date TEXT NOT NULL, single_use INTEGER NOT NULL, modify_amount INTEGER NOT NULL,
    branch_code TEXT, status INTEGER NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, qr_id TEXT NOT NULL, user_name TEXT NOT NULL,
    day TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_by_day ON payments (user_name, day);
CREATE INDEX IF NOT EXISTS payments_by_qr ON payments (qr_id);
"""


class Refused(Exception):
    """A payment or change the bank does not allow; ``status`` is the control route's answer."""

    def __init__(self, message, status=409):
        super().__init__(message)
        self.message = message
        self.status = status


def la_paz_now():
    return datetime.now(LA_PAZ)


class Ledger:
    """Everything the simulated bank remembers, in one SQLite database."""

    def __init__(self, path=None):
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.executescript(SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('token_secret', ?)", (secrets.token_hex(32),)
            )
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('next_number', '1')")

    def token_secret(self):
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name='token_secret'").fetchone()
        return row[0]

    def _next_number(self):
        """A number the bank has never handed out (for qrIds and payment transactions)."""
        row = self._db.execute("SELECT value FROM meta WHERE name='next_number'").fetchone()
        number = int(row[0])
        self._db.execute("UPDATE meta SET value=? WHERE name='next_number'", (str(number + 1),))
        return number

    # Merchants

    def register(self, user_name, password, aes_key, account_number, notify_url, notify_bearer):
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?, ?, ?)",
                (user_name, password, aes_key, account_number, notify_url, notify_bearer),
            )

    def account(self, user_name):
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM accounts WHERE user_name=?", (user_name,)
            ).fetchone()
        return dict(row) if row else None

    # QRs

    def issue(self, user_name, order):
        """A new active QR for ``order`` (the generateQR fields, already checked)."""
        now = la_paz_now()
        with self._lock, self._db:
            qr_id = now.strftime("%y%m%d") + f"{self._next_number():014d}"
            self._db.execute(
                "INSERT INTO qrs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    qr_id,
                    user_name,
                    order["transactionId"],
                    order["currency"],
                    str(order["amount"]),
                    order.get("description") or "",
                    order["dueDate"],
                    int(order["singleUse"]),
                    int(order["modifyAmount"]),
                    order.get("branchCode"),
                    ACTIVE,
                    now.isoformat(),
                ),
            )
        return qr_id

    def qr(self, qr_id, user_name=None):
        """The QR as a dict (None if unknown, or if it is not ``user_name``'s)."""
        with self._lock:
            row = self._db.execute("SELECT * FROM qrs WHERE qr_id=?", (qr_id,)).fetchone()
        if row is None or (user_name is not None and row["user_name"] != user_name):
            return None
        return dict(row)

    def qrs(self, limit=200):
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM qrs ORDER BY created_at DESC, qr_id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [dict(row) for row in rows]

    def cancel(self, qr_id, user_name):
        """Cancel as the bank does: a paid single-use QR cannot be cancelled."""
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT status, single_use FROM qrs WHERE qr_id=? AND user_name=?",
                (qr_id, user_name),
            ).fetchone()
            if row is None:
                raise Refused("QR no encontrado", 404)
            if row["status"] == CANCELLED:
                raise Refused("El QR ya está anulado")
            if row["status"] == PAID and row["single_use"]:
                raise Refused("El QR de uso único ya fue pagado y no puede anularse")
            self._db.execute("UPDATE qrs SET status=? WHERE qr_id=?", (CANCELLED, qr_id))

    def set_status(self, qr_id, code):
        """Change a QR's status code behind the merchant's back (status-sync tests)."""
        with self._lock, self._db:
            changed = self._db.execute(
                "UPDATE qrs SET status=? WHERE qr_id=?", (code, qr_id)
            ).rowcount
        if not changed:
            raise Refused("QR no encontrado", 404)

    # Payments

    def pay(self, qr_id, amount=None, sender=None, moment=None):
        """Record a payment of ``qr_id`` as the bank would, and return its PaymentQR."""
        sender = sender or {}
        moment = moment or la_paz_now()
        with self._lock, self._db:
            row = self._db.execute("SELECT * FROM qrs WHERE qr_id=?", (qr_id,)).fetchone()
            if row is None:
                raise Refused("QR no encontrado", 404)
            if row["status"] == CANCELLED:
                raise Refused("El QR está anulado")
            if row["status"] == PAID and row["single_use"]:
                raise Refused("El QR de uso único ya fue pagado")
            if row["status"] not in (ACTIVE, PAID):
                raise Refused("El QR no admite pagos")
            if moment.strftime("%Y-%m-%d") > row["due_date"]:
                raise Refused("El QR está vencido")
            price = Decimal(row["amount"])
            if amount is None:
                amount = price
            elif amount != price and not row["modify_amount"]:
                raise Refused("El importe no coincide con el del QR")
            payment = {
                "qrId": qr_id,
                "transactionId": str(self._next_number()),
                "paymentDate": moment.strftime("%Y-%m-%dT00:00:00"),
                "paymentTime": moment.strftime("%H:%M:%S"),
                "currency": row["currency"],
                "amount": str(amount),
                "senderBankCode": sender.get("senderBankCode") or "1016",
                "senderName": sender.get("senderName") or "CLIENTE SIMULADO",
                "senderDocumentId": "0",
                "senderAccount": sender.get("senderAccount") or "******1913",
                "description": row["description"],
            }
            if row["branch_code"]:
                payment["branchCode"] = row["branch_code"]
            self._db.execute(
                "INSERT INTO payments (qr_id, user_name, day, body) VALUES (?, ?, ?, ?)",
                (qr_id, row["user_name"], moment.strftime("%Y%m%d"), json.dumps(payment)),
            )
            self._db.execute("UPDATE qrs SET status=? WHERE qr_id=?", (PAID, qr_id))
        return _exact(payment)

    def payments_of(self, qr_id):
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM payments WHERE qr_id=? ORDER BY seq", (qr_id,)
            ).fetchall()
        return [_exact(json.loads(row[0])) for row in rows]

    def paid_on(self, user_name, day):
        """Payments of ``user_name``'s QRs on a La Paz day ``yyyyMMdd``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM payments WHERE user_name=? AND day=? ORDER BY seq",
                (user_name, day),
            ).fetchall()
        return [_exact(json.loads(row[0])) for row in rows]


def _exact(payment):
    """A stored PaymentQR with its amount as a ``Decimal`` (a JSON number on the wire)."""
    return {**payment, "amount": Decimal(payment["amount"])}
