"""The Peewee private attributes ``models.peewee_internals`` relies on still mean what it
assumes: a Peewee upgrade that changes one fails here, not on the payment path."""

import peewee

from models import database
from models.db import open_database
from models.peewee_internals import (
    CONNECTION_LOCAL,
    connection_state,
    field_values,
    loaded_instance,
    mark_inserted,
    open_connection,
    pool_size,
    pool_wait_timeout,
)


class Note(peewee.Model):
    text = peewee.CharField()
    kind = peewee.CharField(default="plain")

    class Meta:
        database = database


def test_a_loaded_instance_has_only_the_columns_read_and_nothing_changed():
    note = loaded_instance(Note, {"id": 7, "text": "hola"})
    assert field_values(note) == {"id": 7, "text": "hola"}  # no default applied to kind
    assert not note.is_dirty() and note.dirty_fields == []


def test_field_values_are_the_instances_own_values():
    note = Note(text="hola")
    assert field_values(note) == {"text": "hola", "kind": "plain"}
    note.text = "chau"
    assert field_values(note)["text"] == "chau"


def test_an_inserted_instance_has_its_id_and_nothing_changed():
    note = Note(text="hola")
    assert note.is_dirty()
    mark_inserted(note, 42)
    assert note.get_id() == 42 and note.id == 42
    assert not note.is_dirty()


def test_a_pool_keeps_its_size_and_wait_as_given(tmp_path):
    pool = open_database(f"sqlite:///{tmp_path / 'pool.db'}")
    assert (pool_size(pool), pool_wait_timeout(pool)) == (64, 10)


def test_the_connection_state_is_this_threads_and_holds_its_connection(tmp_path):
    pool = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    assert isinstance(connection_state(pool), CONNECTION_LOCAL)
    assert open_connection(pool) is None
    pool.connect()
    try:
        assert open_connection(pool) is pool.connection()
        connection_state(pool).mark = "set"
        assert connection_state(pool).mark == "set"
    finally:
        pool.close()
    assert open_connection(pool) is None
