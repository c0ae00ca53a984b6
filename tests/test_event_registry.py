"""The event registry is the one declaration of the stream's event types: the clients' lists,
the OpenAPI catalogue and the vocabularies its schemas use must agree with it."""

import re
from pathlib import Path

from models import MOVEMENT_TYPES, Event
from qrevents.events import DURABLE_TYPES, EVENT_TYPES
from qrevents.openapi import build_spec
from qrevents.services.ledger import MOVEMENT_EFFECTS

STATIC = Path(__file__).resolve().parent.parent / "qrevents" / "static"


def js_string_array(source, name):
    """The strings of ``export const <name> = Object.freeze([...])`` in a JS module."""
    match = re.search(rf"export const {name} = Object\.freeze\(\[(.*?)\]\);", source, re.S)
    assert match, f"{name} not found"
    return re.findall(r"'([a-z_]+)'", match[1])


def test_qrevents_js_lists_the_registrys_event_types_in_its_order():
    source = (STATIC / "qrevents.js").read_text()
    assert js_string_array(source, "EVENT_TYPES") == list(EVENT_TYPES)
    assert js_string_array(source, "DURABLE_TYPES") == list(DURABLE_TYPES)


def test_the_dashboard_applies_every_durable_type_and_no_other():
    """The dashboard subscribes to qrevents.js's DURABLE_TYPES and its state applies each."""
    state = (STATIC / "dashboard" / "state.js").read_text()
    applied = set(re.findall(r"type === '([a-z_]+)'", state))
    assert applied == set(DURABLE_TYPES)
    app = (STATIC / "dashboard" / "app.js").read_text()
    assert "for (const type of DURABLE_TYPES)" in app


def test_the_openapi_catalogue_is_the_registry():
    catalog = build_spec()["paths"]["/events/stream"]["get"]["x-sse-events"]
    assert list(catalog) == list(EVENT_TYPES)
    for name, event in EVENT_TYPES.items():
        assert catalog[name]["data"] == event.data_schema
        assert (catalog[name]["id"] is not None) == event.durable
        assert catalog[name]["idPattern"] == event.id_pattern


def test_every_movement_type_has_its_ledger_effects():
    assert set(MOVEMENT_EFFECTS) == set(MOVEMENT_TYPES)


def test_every_durable_type_fits_the_logs_type_column():
    assert all(len(name) <= Event.event_type.max_length for name in DURABLE_TYPES)
