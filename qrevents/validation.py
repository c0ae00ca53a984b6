"""Request parsing: a JSON object in, typed values out, every bad field named in one 422."""

import json
import re
from datetime import UTC, date, datetime, time
from decimal import Decimal

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from .clock import LA_PAZ
from .errors import InvalidJson, ValidationFailed
from .events import SAFE_ID
from .money import CENT, CURRENCIES, MAX_AMOUNT, to_cents

# America/La_Paz has kept UTC-4, without daylight saving, since 1932.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?\Z")
# ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
_DIGITS = re.compile(r"[0-9]+\Z")
# The bank's bare dates: yyyyMMdd (its listings) and yyyy-MM-dd (its documented date format).
_BANK_DATE = re.compile(r"[0-9]{8}\Z|[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
# Largest id a URL may name: SQLite cannot bind a larger int (a 500 otherwise).
MAX_ID = 2**63 - 1


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def request_body():
    """The raw body, or 413 when it is over the cap, whether or not it had a Content-Length.

    Werkzeug refuses a too-long Content-Length up front, but silently cuts a chunked body
    at the cap: without this check a route would take the first 64 KiB for the whole body.
    """
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and len(raw) >= limit and request.content_length is None:
        if request.environ["wsgi.input"].read(1):  # more than the cap was sent
            raise RequestEntityTooLarge()
    return raw


def json_object():
    """The request body as a dict; amounts stay exact (``Decimal``)."""
    raw = request_body()
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError, ArithmeticError):
        # ArithmeticError: Decimal's InvalidOperation, for an exponent it cannot hold
        raise InvalidJson("El cuerpo no es JSON válido") from None
    if not isinstance(body, dict):
        raise InvalidJson("El cuerpo debe ser un objeto JSON")
    return body


class Fields:
    """Reads typed fields from a JSON object, collecting one message per bad field.

    Each reader returns the value (or None when it is bad or absent); ``check`` raises
    ``ValidationFailed`` naming every bad field at once.
    """

    _MISSING = object()

    def __init__(self, body):
        self.body = body
        self.errors = {}

    def _raw(self, name, required):
        value = self.body.get(name, self._MISSING)
        if value is self._MISSING or value is None:
            if required:
                self.errors[name] = "es obligatorio"
            return self._MISSING
        return value

    def fail(self, name, message):
        self.errors.setdefault(name, message)

    def string(self, name, *, max_length, required=True, default=None):
        value = self._raw(name, required)
        if value is self._MISSING:
            return default
        if not isinstance(value, str):
            self.fail(name, "debe ser un texto")
        elif not value.strip() and required:
            self.fail(name, "no debe estar vacío")
        elif len(value) > max_length:
            self.fail(name, f"debe tener como máximo {max_length} caracteres")
        elif any(ch in value for ch in "\r\n\x00"):
            self.fail(name, "no debe contener saltos de línea ni NUL")
        elif not _encodable(value):
            # A lone surrogate ("\ud800" in JSON) cannot be stored or sent as UTF-8.
            self.fail(name, "debe ser texto Unicode válido")
        else:
            return value
        return None

    def safe_id(self, name, *, max_length=64, required=True):
        """An id that may end up in an SSE ``id:`` line: ``[A-Za-z0-9_.:-]``."""
        value = self._raw(name, required)
        if value is self._MISSING:
            return None
        if not isinstance(value, str) or not SAFE_ID.match(value) or len(value) > max_length:
            self.fail(name, f"debe tener de 1 a {max_length} caracteres: letras, dígitos y _ . : -")
            return None
        return value

    def email(self, name):
        value = self.string(name, max_length=254)
        if value is not None and not _EMAIL.match(value):
            self.fail(name, "debe ser una dirección de email")
            return None
        return value

    def integer(self, name, *, required=True):
        value = self._raw(name, required)
        if value is self._MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**53:
            self.fail(name, "debe ser un número entero positivo")
            return None
        return value

    def boolean(self, name, *, default):
        value = self._raw(name, False)
        if value is self._MISSING:
            return default
        if not isinstance(value, bool):
            self.fail(name, "debe ser true o false")
            return None
        return value

    def choice_list(self, name, choices):
        """A non-empty list of ``choices`` (no longer than they are); absent or null: None."""
        value = self.body.get(name)
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or not value
            or len(value) > len(choices)
            or not all(isinstance(item, str) and item in choices for item in value)
        ):
            self.fail(name, f"debe ser una lista no vacía de: {', '.join(choices)}")
            return None
        return value

    def amount(self, name):
        """Centavos of a positive amount with at most two decimals, up to 99,999,999.99."""
        value = self._raw(name, True)
        if value is self._MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            self.fail(name, "debe ser un número")
            return None
        value = Decimal(value)
        if not value.is_finite() or value <= 0:
            self.fail(name, "debe ser mayor que 0")
        elif value > MAX_AMOUNT:
            self.fail(name, "debe ser como máximo 99999999.99")
        elif value != value.quantize(CENT):
            self.fail(name, "debe tener como máximo dos decimales")
        else:
            return to_cents(value)
        return None

    def currency(self, name):
        value = self._raw(name, True)
        if value is self._MISSING:
            return None
        if value not in CURRENCIES:
            self.fail(name, f"debe ser uno de: {', '.join(CURRENCIES)}")
            return None
        return value

    def choice(self, name, choices):
        value = self._raw(name, True)
        if value is self._MISSING:
            return None
        if not isinstance(value, str) or value not in choices:
            self.fail(name, f"debe ser uno de: {', '.join(choices)}")
            return None
        return value

    def moment(self, name, *, required, date_at=time(23, 59, 59, 999000)):
        """A naive UTC datetime from ISO 8601 (``parse_moment``)."""
        value = self._raw(name, required)
        if value is self._MISSING:
            return None
        parsed = parse_moment(value, date_at) if isinstance(value, str) else None
        if parsed is None:
            self.fail(name, "debe ser una fecha o una fecha y hora ISO 8601")
        return parsed

    def bank_moment(self, date_name, time_name):
        """``(naive UTC, "HH:MM:SS")`` of the bank's date and time fields, by one rule.

        A date or date-time without an offset is La Paz time (UTC-4). The time field (La Paz
        time, as BANECO sends it) applies when the date has no time of day or a zero one
        (BANECO sends ``"2021-06-14T00:00:00"`` with ``"paymentTime": "17:06:29"``); a date
        with an offset keeps it. The time of day returned is the time field as sent, else the
        one written in the date.
        """
        time_text = self.time_of_day(time_name)
        value = self._raw(date_name, True)
        if value is self._MISSING:
            return None, None
        written = _bank_date(value) if isinstance(value, str) else None
        if written is None:
            self.fail(
                date_name, "debe ser una fecha yyyyMMdd, yyyy-MM-dd o una fecha y hora ISO 8601"
            )
            return None, None
        if time_text is not None and written.time() == time(0, 0):
            written = datetime.combine(
                written.date(), time.fromisoformat(time_text), written.tzinfo or LA_PAZ
            )
        try:
            moment = written.replace(tzinfo=written.tzinfo or LA_PAZ).astimezone(UTC)
        except OverflowError:  # year 1 or 9999 moved across UTC
            self.fail(date_name, "debe ser una fecha entre los años 1 y 9999 en UTC")
            return None, None
        return moment.replace(tzinfo=None), time_text or written.strftime("%H:%M:%S")

    def time_of_day(self, name):
        value = self._raw(name, False)
        if value is self._MISSING:
            return None
        if not isinstance(value, str) or not _TIME_OF_DAY.match(value):
            self.fail(name, "debe ser una hora HH:MM:SS")
            return None
        return value if len(value) == 8 else value + ":00"

    def pattern(self, name, regex, message, *, required=True):
        """A string matching ``regex`` whole (as typed by a person: surrounding blanks go)."""
        value = self._raw(name, required)
        if value is self._MISSING:
            return None
        if not isinstance(value, str) or not regex.fullmatch(value.strip()):
            self.fail(name, message)
            return None
        return value.strip()

    def check(self):
        if self.errors:
            raise ValidationFailed(fields=self.errors)


def _encodable(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bank_date(text):
    """A date (``yyyyMMdd`` or ``yyyy-MM-dd``, at midnight) or an ISO date-time, as written."""
    if len(text) > 40:
        return None
    try:
        if _BANK_DATE.match(text):
            return datetime.combine(date.fromisoformat(text), time(0, 0))
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def parse_moment(text, date_at):
    """Naive UTC datetime of an ISO date-time or of a date (``date_at`` that day). Without an
    offset both are La Paz time, the rule the bank's dates follow too: a merchant writing
    ``2026-12-24T18:00`` means six in the evening where the QR is paid."""
    if len(text) > 40:
        return None
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), date_at)
        else:
            moment = datetime.fromisoformat(text)
        moment = moment.replace(tzinfo=moment.tzinfo or LA_PAZ)
        return moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved across UTC
        return None


def page_args(default_limit=50, max_limit=200):
    """``limit`` and ``cursor`` query arguments for a newest-first listing."""
    errors = {}
    limit, cursor = default_limit, None
    raw_limit = request.args.get("limit")
    if raw_limit is not None:
        if not _DIGITS.match(raw_limit) or not 1 <= int(raw_limit) <= max_limit:
            errors["limit"] = f"debe ser un número entero de 1 a {max_limit}"
        else:
            limit = int(raw_limit)
    raw_cursor = request.args.get("cursor")
    if raw_cursor is not None:
        if not _DIGITS.match(raw_cursor) or len(raw_cursor) > 18:
            errors["cursor"] = "no es un cursor devuelto por esta API"
        else:
            cursor = int(raw_cursor)
    if errors:
        raise ValidationFailed(fields=errors)
    return limit, cursor


class Field:
    """One field of a request body, declared once: how ``Fields`` reads it (``read(fields)``)
    and the JSON Schema of the properties it reads (``bank_moment`` reads two)."""

    def __init__(self, name, read, properties, required):
        self.name = name
        self.read = read
        self.properties = properties
        self.required = required


class Body:
    """A request body declared once (``qrevents.bodies``): the routes read it, the OpenAPI
    description shows its schema."""

    def __init__(self, *fields, changes=False):
        """``changes``: a body of changes to an existing thing: only the fields it holds are
        read (each as its declaration says), and any other name is refused."""
        self.fields = fields
        self.readers = tuple((field.name, field.read) for field in fields)
        self.changes = changes

    def read(self, body):
        """The values by field name; ``ValidationFailed`` naming every bad field."""
        fields = Fields(body)
        if self.changes:
            for name in sorted(set(body) - {name for name, _ in self.readers}):
                fields.fail(name, "no se puede cambiar")
            values = {name: read(fields) for name, read in self.readers if name in body}
        else:
            values = {name: read(fields) for name, read in self.readers}
        if fields.errors:
            raise ValidationFailed(fields=fields.errors)
        return values

    def schema(self):
        properties, required = {}, []
        for field in self.fields:
            properties.update(field.properties)
            required += field.required
        if self.changes:
            return {
                "type": "object",
                "properties": properties,
                "required": [],
                "additionalProperties": False,
            }
        return {"type": "object", "properties": properties, "required": required}


def json_pattern(regex):
    """A JSON Schema ``pattern`` (anchored both ends) of a regex used with ``match``/``\\Z``."""
    source = regex.pattern.removesuffix(r"\Z")
    return f"^{source}$"


SAFE_ID_PATTERN = json_pattern(SAFE_ID)
AMOUNT_DOC = "Positive, at most two decimals; send it as a JSON number, never a string"


def _field(name, read, schema, required, doc):
    if not required and schema["type"] in ("string", "integer", "boolean"):
        schema = {**schema, "type": [schema["type"], "null"]}
    return Field(name, read, {name: {**schema, **doc}}, [name] if required else [])


def text(name, *, max_length, min_length=None, required=True, default=None, **doc):
    """A one-line text; ``min_length`` counts characters (a password's)."""

    def read(fields):
        value = fields.string(name, max_length=max_length, required=required, default=default)
        if min_length is not None and value is not None and len(value) < min_length:
            fields.fail(name, f"debe tener al menos {min_length} caracteres")
            return None
        return value

    schema = {"type": "string", "minLength": min_length or 1} if required else {"type": "string"}
    return _field(name, read, {**schema, "maxLength": max_length}, required, doc)


def safe_id(name, *, max_length=64, required=True, **doc):
    def read(fields):
        return fields.safe_id(name, max_length=max_length, required=required)

    schema = {"type": "string", "pattern": SAFE_ID_PATTERN, "maxLength": max_length}
    return _field(name, read, schema, required, doc)


def email(name, **doc):
    schema = {"type": "string", "maxLength": 254, "pattern": json_pattern(_EMAIL)}
    return _field(name, lambda fields: fields.email(name), schema, True, doc)


def integer(name, *, required=True, **doc):
    def read(fields):
        return fields.integer(name, required=required)

    return _field(name, read, {"type": "integer", "minimum": 1}, required, doc)


def boolean(name, *, default, **doc):
    def read(fields):
        return fields.boolean(name, default=default)

    return _field(name, read, {"type": "boolean", "default": default}, False, doc)


def flag(name, **doc):
    """A boolean that must be given (null is not one)."""

    def read(fields):
        value = fields.boolean(name, default=None)
        if value is None:
            fields.fail(name, "debe ser true o false")
        return value

    return _field(name, read, {"type": "boolean"}, True, doc)


def choice_list(name, choices, **doc):
    """A non-empty list of ``choices``; absent or null: None."""

    def read(fields):
        return fields.choice_list(name, choices)

    schema = {
        "type": ["array", "null"],
        "items": {"type": "string", "enum": list(choices)},
        "minItems": 1,
    }
    return Field(name, read, {name: {**schema, **doc}}, [])


def amount(name, **doc):
    """Centavos (see ``Fields.amount``)."""
    schema = {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": float(MAX_AMOUNT),
        "description": AMOUNT_DOC,
    }
    return _field(name, lambda fields: fields.amount(name), schema, True, doc)


def currency(name, **doc):
    schema = {"type": "string", "enum": list(CURRENCIES)}
    return _field(name, lambda fields: fields.currency(name), schema, True, doc)


def choice(name, choices, **doc):
    schema = {"type": "string", "enum": list(choices)}
    return _field(name, lambda fields: fields.choice(name, choices), schema, True, doc)


def moment(name, *, required, **doc):
    def read(fields):
        return fields.moment(name, required=required)

    return _field(name, read, {"type": "string"}, required, doc)


def bank_moment(date_name, time_name, *, date_doc, time_doc):
    """``(naive UTC, "HH:MM:SS")`` from the bank's two fields (``Fields.bank_moment``)."""
    properties = {
        date_name: {"type": "string", "description": date_doc},
        time_name: {
            "type": ["string", "null"],
            "pattern": json_pattern(_TIME_OF_DAY),
            "description": time_doc,
        },
    }

    def read(fields):
        return fields.bank_moment(date_name, time_name)

    return Field(date_name, read, properties, [date_name])


def pattern(name, regex, message, *, required=True, max_length=None, shown=True, **doc):
    """A string matching ``regex`` whole once stripped; ``shown``: whether the schema shows
    the pattern (not for one a person types with blanks around it, which are stripped)."""

    def read(fields):
        value = fields.pattern(name, regex, message, required=required)
        if max_length is not None and value is not None and len(value) > max_length:
            fields.fail(name, f"debe tener como máximo {max_length} caracteres")
            return None
        return value

    schema = {"type": "string"}
    if shown:
        schema["pattern"] = json_pattern(regex)
    if max_length is not None:
        schema["maxLength"] = max_length
    return _field(name, read, schema, required, doc)
