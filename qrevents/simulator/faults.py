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

SETTING_CHOICES = {
    "statusField": ("statusQrCode", "statusQRCode"),
    "paymentShape": ("array", "object"),
    "expiredTokenAnswer": ("http401", "responseCode"),
}
NOTIFY_SWITCHES = ("drop", "twice", "outOfOrder")


def _number(value):
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


# Each switch of an operation, and what its value must be.
OPERATION_SWITCHES = {
    "latency": lambda value: _number(value) and 0 <= value <= 600,
    "httpStatus": lambda value: _whole(value) and 100 <= value <= 599,
    "responseCode": _whole,
    "message": lambda value: isinstance(value, str),
    "body": lambda value: True,  # any JSON: the point is to send what the bank should not
    "times": lambda value: _whole(value) and value >= 1,
    "actFirst": lambda value: isinstance(value, bool),
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
        """Merge ``switches`` (``{operation: {...}, "tokens": {...}, "notify": {...}}``): all
        of them checked first, so a bad one changes nothing."""
        if not isinstance(switches, dict):
            raise FaultError("se esperaba un objeto JSON")
        for name, value in switches.items():
            _check_switches(name, value)
        with self._lock:
            for name, value in switches.items():
                if name in OPERATIONS:
                    self._operations[name] = dict(value)
                elif name == "notify":
                    self._notify = dict(value)
                elif value.get("expire"):
                    self.token_generation += 1

    def configure(self, changes):
        """Change settings by name (only the known ones, with values of their kind)."""
        if not isinstance(changes, dict):
            raise FaultError("se esperaba un objeto JSON")
        checked = {name: _setting(name, value) for name, value in changes.items()}
        with self._lock:
            self.settings.update(checked)

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


def _check_switches(name, value):
    if not isinstance(value, dict):
        raise FaultError(f"{name}: se esperaba un objeto")
    if name in OPERATIONS:
        for switch, switch_value in value.items():
            valid = OPERATION_SWITCHES.get(switch)
            if valid is None:
                raise FaultError(f"{name}: interruptor desconocido {switch!r}")
            if not valid(switch_value):
                raise FaultError(f"{name}.{switch}: valor inválido")
    elif name == "notify":
        for switch, on in value.items():
            if switch not in NOTIFY_SWITCHES or not isinstance(on, bool):
                raise FaultError(f"notify.{switch}: interruptor desconocido o no lógico")
    elif name == "tokens":
        if set(value) != {"expire"} or not isinstance(value["expire"], bool):
            raise FaultError('tokens: se esperaba {"expire": true}')
    else:
        raise FaultError(f"operación desconocida {name!r}")


def _setting(name, value):
    """``value`` for setting ``name``, as the kind of its default; ``FaultError`` if not."""
    if name not in DEFAULT_SETTINGS:
        raise FaultError(f"ajuste desconocido {name!r}")
    default = DEFAULT_SETTINGS[name]
    if isinstance(default, float) and _number(value) and 0 <= value <= 86400:
        return float(value)
    if isinstance(default, int) and not isinstance(default, float) and _whole(value):
        if 1 <= value <= 100:
            return value
    if name in SETTING_CHOICES and value in SETTING_CHOICES[name]:
        return value
    raise FaultError(f"{name}: valor inválido")
