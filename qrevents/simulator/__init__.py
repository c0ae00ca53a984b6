"""A simulated bank that speaks BANECO's QR Simple API: the embedded default behind qrevents.

A WSGI app of its own (own port, own state), never imported by ``qrevents.banks``: the
production client talks to it over HTTP exactly as it talks to BANECO. ``create_app`` builds
it; ``python -m qrevents.simulator`` serves it.
"""

from dataclasses import dataclass

from flask import Flask

from .faults import DEFAULT_SETTINGS, Faults
from .ledger import Ledger
from .notifier import Notifier


@dataclass
class SimulatedBank:
    """Everything one simulator process holds: its books, its switches, its notifier."""

    ledger: Ledger
    faults: Faults
    notifier: Notifier


def create_app(state_path=None, **settings):
    """The simulator's WSGI app; ``state_path`` is its SQLite file (memory when None), and
    ``settings`` override ``faults.DEFAULT_SETTINGS`` (e.g. ``tokenLifetimeSeconds``)."""
    from . import api, control

    faults = Faults({**DEFAULT_SETTINGS, **settings})
    app = Flask(__name__)
    app.extensions["simulator"] = SimulatedBank(
        ledger=Ledger(state_path),
        faults=faults,
        notifier=Notifier(faults.settings, faults),
    )
    app.register_blueprint(api.bp)
    app.register_blueprint(control.bp)
    return app
