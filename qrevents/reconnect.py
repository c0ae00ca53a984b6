"""A request whose pooled connection PostgreSQL ended (a restart, a failover, an operator's
``pg_terminate_backend``) is run again, once, on a fresh connection.

Only when nothing of the request may have committed: the connection tracks whether it sent
a COMMIT (or a write outside a transaction), and after that the outcome is unknown, so the
answer is 503 with Retry-After; the bank's retry is then safe, its ``transactionId`` makes
the payment idempotent. A second loss, or a database that cannot be reached, is a 503 too.
"""

import functools

import peewee
from flask import current_app, request

from models import database

from .errors import Unavailable

LOST = (peewee.OperationalError, peewee.InterfaceError)


def unavailable():
    return Unavailable(
        "Se perdió la conexión con la base de datos; reintente en breve",
        headers={"Retry-After": "1"},
    )


def rerun_on_lost_connection(view):
    """``view``, run again on a fresh connection if its connection was lost before commit."""

    @functools.wraps(view)
    def run(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except LOST:
            if not database.connection_lost():
                raise
            if database.sent_commit():
                raise unavailable() from None
        current_app.logger.warning(
            "database connection lost on %s %s; running it again", request.method, request.path
        )
        try:
            database.replace_lost_connection()
            return view(*args, **kwargs)
        except LOST:
            if database.is_closed() or database.connection_lost():
                raise unavailable() from None
            raise

    return run


def open_request_connection():
    """The request's connection; 503 when the database cannot be reached."""
    try:
        database.connect(reuse_if_open=True)
    except LOST:
        raise unavailable() from None


def in_connection(step, *args):
    """``step(*args)`` in a short connection of its own (views that hold none while the bank
    answers), run again once on a fresh connection if PostgreSQL ended it before commit.
    A connection the caller already holds is used as it is."""
    if not database.is_closed():
        return step(*args)
    open_request_connection()
    try:
        return rerun_on_lost_connection(step)(*args)
    finally:
        if not database.is_closed():
            database.close()
