"""Fault switches and settings of the simulated bank, changed at run time by tests or by hand.

Per operation (``authenticate``, ``generateQR``, ``cancelQR``, ``statusQR``, ``paidQR``):
``latency`` seconds before answering, an ``httpStatus`` error, a refusal (``responseCode``
with ``message``), or any ``body`` in place of the answer (HTTP 200: fields missing or
garbled, unknown status codes); ``times`` limits a switch to the next N requests, and
``actFirst`` makes the bank do the work before the latency or the error (the answer is lost,
the change is not). ``tokens.expire`` makes every token issued so far expired. ``notify``:
``drop``, ``twice``, ``outOfOrder``.
"""

import threading
from decimal import Decimal

OPERATIONS = ("authenticate", "generateQR", "cancelQR", "statusQR", "paidQR")

DEFAULT_SETTINGS = {
    "tokenLifetimeSeconds": 1800.0,  # 30 minutes, as in the bank's example token
    "notifyAttempts": 10,
    "notifyIntervalSeconds": 1.0,
    "statusField": "statusQrCode",  # or "statusQRCode": the specification spells it both ways
    "paymentShape": "array",  # or "object": the specification shows both
    "expiredTokenAnswer": "http401",  # or "responseCode": the specification does not say
}

OPERATION_SWITCHES = {
    "latency",
    "httpStatus",
    "responseCode",
    "message",
    "body",
    "times",
    "actFirst",
}


class FaultError(ValueError):
    """A switch or setting the simulator does not know, or a value of the wrong kind."""


class Faults:
    """The switches now in force, the settings, and how many requests each operation got."""

    def __init__(self, settings):
        self._lock = threading.Lock()
        self._defaults = dict(settings)
        self.settings = dict(settings)
        self._operations = {}
        self._notify = {}
        self.token_generation = 0  # tokens of an older generation are expired
        self.requests = {}

    def reset(self):
        """No switches, the start-up settings, the counters at zero."""
        with self._lock:
            self._operations = {}
            self._notify = {}
            self.settings.clear()
            self.settings.update(self._defaults)
            self.requests = {}

    def clear(self):
        with self._lock:
            self._operations = {}
            self._notify = {}

    def set(self, switches):
        """Merge ``switches`` (``{operation: {...}, "tokens": {...}, "notify": {...}}``)."""
        if not isinstance(switches, dict):
            raise FaultError("se esperaba un objeto JSON")
        with self._lock:
            for name, value in switches.items():
                if not isinstance(value, dict):
                    raise FaultError(f"{name}: se esperaba un objeto")
                if name in OPERATIONS:
                    unknown = set(value) - OPERATION_SWITCHES
                    if unknown:
                        raise FaultError(f"{name}: interruptor desconocido {sorted(unknown)}")
                    self._operations[name] = dict(value)
                elif name == "notify":
                    self._notify = {key: bool(on) for key, on in value.items()}
                elif name == "tokens":
                    if value.get("expire"):
                        self.token_generation += 1
                else:
                    raise FaultError(f"operación desconocida {name!r}")

    def configure(self, changes):
        """Change settings by name (only the known ones, with values of the same kind)."""
        if not isinstance(changes, dict):
            raise FaultError("se esperaba un objeto JSON")
        with self._lock:
            for name, value in changes.items():
                if name not in DEFAULT_SETTINGS:
                    raise FaultError(f"ajuste desconocido {name!r}")
                kind = type(DEFAULT_SETTINGS[name])
                numeric = isinstance(value, (int, Decimal)) and not isinstance(value, bool)
                if kind is float and numeric:
                    value = float(value)
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise FaultError(f"{name}: valor de tipo incorrecto")
                self.settings[name] = value

    def take(self, operation):
        """Count a request of ``operation`` and return the switch it meets (or {})."""
        with self._lock:
            self.requests[operation] = self.requests.get(operation, 0) + 1
            switch = self._operations.get(operation)
            if not switch:
                return {}
            if "times" in switch:
                switch["times"] -= 1
                if switch["times"] <= 0:
                    del self._operations[operation]
            return dict(switch)

    def count(self, name):
        with self._lock:
            self.requests[name] = self.requests.get(name, 0) + 1

    def notify(self):
        with self._lock:
            return dict(self._notify)
