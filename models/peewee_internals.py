"""Every use of Peewee's private attributes, in one place.

Each function names the public API it stands in for and why that one will not do;
``tests/test_peewee_internals.py`` fails if a Peewee upgrade changes any of them. (A
model's ``_meta`` is not here: Peewee documents it as the model's public metadata.)
"""

import peewee

# Peewee's per-thread connection state. Under gevent it must be greenlet-local, which only
# shows in its base class: Peewee has no public way to ask (qrevents.create_app checks it).
CONNECTION_LOCAL = peewee._ConnectionLocal


def loaded_instance(model, values):
    """A model instance of a row read by our own SQL, as Peewee's SELECT would give it
    (``Model.select(...).get()``, whose SQL Peewee builds anew at every run): only the
    columns read are set, no field's default is applied, and nothing counts as changed."""
    instance = model(__no_default__=1, **values)
    instance._dirty.clear()
    return instance


def field_values(instance):
    """The field values set on ``instance``, by field name, as a live dict (not a copy):
    ``playhouse.shortcuts.model_to_dict(instance, recurse=False)`` copies, and also lists
    the fields never set."""
    return instance.__data__


def mark_inserted(instance, pk):
    """Give a new ``instance`` the id its INSERT returned and mark it saved, as
    ``Model.save(force_insert=True)`` does after its own INSERT."""
    instance._pk = pk
    instance._dirty.clear()


def pool_size(pool):
    """``max_connections`` as given to the pool's constructor (PooledDatabase keeps it only
    privately; 0: no limit)."""
    return pool._max_connections


def pool_wait_timeout(pool):
    """``timeout`` as given to the pool's constructor: how long ``connect`` waits for a
    free connection (kept only privately)."""
    return pool._wait_timeout


def connection_state(db):
    """This thread's (greenlet's) connection state of ``db``, where the connection tracks
    whether it sent a COMMIT. Peewee has no public per-connection storage."""
    return db._state


def open_connection(db):
    """The DB-API connection this thread holds, or None: ``Database.connection()`` would
    open one when none is open."""
    return db._state.conn
