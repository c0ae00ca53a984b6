"""Queries whose SQL Peewee builds once, then runs many times with fresh parameters.

Building the SQL of even a small SELECT is most of its cost in Peewee (about a third of
opening a stream went there). The hot lookups build theirs once per database dialect.
"""

from .db import database


class PreparedQuery:
    """``build(*params)`` returns a Peewee query whose parameters are exactly ``params``.

    ``rows(*params)`` runs the SQL of the first build with the given parameters and returns
    the raw DB rows (columns as the driver gives them: callers convert what needs it, e.g.
    a ``DateTimeField``'s ``python_value`` for SQLite's text timestamps).
    """

    def __init__(self, build):
        self.build = build
        self.sql = {}  # database class -> SQL text

    def rows(self, *params):
        dialect = type(database.obj)
        sql = self.sql.get(dialect)
        if sql is None:
            sql, built = self.build(*params).sql()
            if list(built) != list(params):
                raise ValueError(f"prepared query takes {params!r} but built {built!r}")
            self.sql[dialect] = sql
        return database.execute_sql(sql, params).fetchall()
