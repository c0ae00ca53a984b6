"""Blinker signals between the services and the delivery side.

Sent only after the database transaction commits; the sender is the Flask app, so two apps
in one process (tests) never hear each other.
"""

from blinker import Namespace

_signals = Namespace()

# kwargs: account_id, events (list of events.EventRecord, in sequence order)
events_committed = _signals.signal("events-committed")

# kwargs: api_key_id. Open streams authenticated by that key must end.
api_key_revoked = _signals.signal("api-key-revoked")
