"""The ledger invariants, read straight from a live server's database after a test."""

import sqlite3


def _rows(server, sql, params):
    url = server.env["QREVENTS_DATABASE_URL"]
    if url.startswith("sqlite:///"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return connection.execute(sql.replace("%s", "?"), params).fetchall()
        finally:
            connection.close()
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()


def assert_ledger_invariants(server, tenant):
    """Balance = the sum of the movements; one movement per payment; events 1..n, no gap."""
    account = tenant.account_id
    ((balance, event_seq),) = _rows(
        server, "SELECT balance_cents, event_seq FROM account WHERE id = %s", (account,)
    )
    movements = _rows(
        server,
        "SELECT movement_type, amount_cents, transaction_id FROM movement WHERE account_id = %s",
        (account,),
    )
    credits = [m for m in movements if m[0] in ("qr_payment", "qr_payment_held")]
    assert balance == sum(amount for _, amount, _ in credits)
    payments = _rows(
        server, "SELECT transaction_id, amount_cents FROM payment WHERE account_id = %s", (account,)
    )
    assert sorted((t, a) for _, a, t in credits) == sorted((t, a) for t, a in payments)
    seqs = [
        seq
        for (seq,) in _rows(
            server, "SELECT seq FROM event WHERE account_id = %s ORDER BY seq", (account,)
        )
    ]
    assert seqs == list(range(1, event_seq + 1))
    return len(payments)
