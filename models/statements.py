"""The statements every account change runs, with their SQL built once per database dialect.

Peewee builds a query's SQL anew at every execution; on the payment path that cost more than
running the queries. One-row reads are PreparedQuery objects (Peewee's SQL, built once). The
writes derive their SQL text from the models' metadata once per dialect (placeholder,
quoting): PreparedQuery runs SELECTs, and needs its parameters in the order the caller gives
them. Values still go through each field's ``db_value`` and ``python_value``, so what these
read and write is what Peewee's own queries would.
"""

from functools import cache

from .db import database, supports_row_locks
from .peewee_internals import field_values, loaded_instance, mark_inserted
from .prepared import PreparedQuery


def _dialect():
    """What the SQL text depends on: the placeholder and the quotes."""
    db = database.obj
    return db.param, db.quote


def _quoted(dialect, name):
    _, quote = dialect
    return f"{quote[0]}{name}{quote[1]}"


def _table(dialect, model):
    return _quoted(dialect, model._meta.table_name)


def _column(dialect, model, name):
    return _quoted(dialect, model._meta.fields[name].column_name)


@cache
def _row_query(model, names, key_name, lock):
    """One row of ``model`` by a unique key, as a PreparedQuery (Peewee builds its SQL once)."""
    fields = [model._meta.fields[name] for name in names]
    key = model._meta.fields[key_name]

    def build(value):
        query = model.select(*fields).where(key == value)
        return query.for_update() if lock and supports_row_locks() else query

    return PreparedQuery(build)


@cache
def _insert_sql(dialect, model, names, row_count, unless_exists=None, returning_id=False):
    param, _ = dialect
    columns = ", ".join(_column(dialect, model, name) for name in names)
    row = "(" + ", ".join([param] * len(names)) + ")"
    values = ", ".join([row] * row_count)
    sql = f"INSERT INTO {_table(dialect, model)} ({columns}) VALUES {values}"
    if unless_exists is not None:
        sql += f" ON CONFLICT ({_column(dialect, model, unless_exists)}) DO NOTHING"
    if returning_id:
        sql += f" RETURNING {_column(dialect, model, model._meta.primary_key.name)}"
    return sql


@cache
def _update_sql(dialect, model, names):
    param, _ = dialect
    assignments = ", ".join(f"{_column(dialect, model, name)} = {param}" for name in names)
    key = _column(dialect, model, model._meta.primary_key.name)
    return f"UPDATE {_table(dialect, model)} SET {assignments} WHERE {key} = {param}"


def get_row(model, key_field, value, *, fields=None, lock=False):
    """The row whose ``key_field`` (unique) is ``value``, as a model instance, or None.

    ``fields`` limits the columns read (the others stay unset, as with Peewee's own partial
    selects). ``lock`` write-locks the row until commit where the database has row locks
    (PostgreSQL's FOR UPDATE); SQLite's write lock is the transaction's, taken at BEGIN
    IMMEDIATE.
    """
    fields = fields or model._meta.sorted_fields
    names = tuple(field.name for field in fields)
    rows = _row_query(model, names, key_field.name, lock).rows(key_field.db_value(value))
    if not rows:
        return None
    (row,) = rows
    values = {field.name: field.python_value(raw) for field, raw in zip(fields, row, strict=True)}
    return loaded_instance(model, values)


def insert(instance, *, unless_exists=None):
    """INSERT the fields set on a new ``instance`` and give it its id.

    With ``unless_exists`` (a unique field), an existing row holding the same value wins:
    nothing is written and the answer is False. On PostgreSQL, ON CONFLICT waits for a
    concurrent transaction inserting that value and then yields to it.
    """
    model = type(instance)
    fields = model._meta.fields
    values = field_values(instance)
    names = tuple(name for name in values if name != model._meta.primary_key.name)
    conflict_name = unless_exists.name if unless_exists is not None else None
    sql = _insert_sql(_dialect(), model, names, 1, conflict_name, returning_id=True)
    params = [fields[name].db_value(values[name]) for name in names]
    row = database.execute_sql(sql, params).fetchone()
    if row is None:
        return False
    mark_inserted(instance, row[0])
    return True


def insert_many(model, rows):
    """INSERT rows (dicts by field name, all with the same names) in one statement."""
    names = tuple(rows[0])
    sql = _insert_sql(_dialect(), model, names, len(rows))
    fields = [model._meta.fields[name] for name in names]
    params = [field.db_value(row[field.name]) for row in rows for field in fields]
    database.execute_sql(sql, params)


def update(instance, fields):
    """UPDATE only ``fields`` of ``instance``'s row, from the instance's values."""
    names = tuple(field.name for field in fields)
    sql = _update_sql(_dialect(), type(instance), names)
    values = field_values(instance)
    params = [field.db_value(values[field.name]) for field in fields]
    params.append(instance.get_id())
    database.execute_sql(sql, params)
