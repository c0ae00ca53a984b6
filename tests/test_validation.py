"""Unit tests of the request readers and the bank signature check: odd input is a field
message or a refusal, never an exception that would become a 500."""

import io
from datetime import datetime, time
from decimal import Decimal

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import RequestEntityTooLarge

from qrevents import bank_signature
from qrevents.errors import InvalidJson, ValidationFailed
from qrevents.validation import Fields, json_object, page_args, parse_moment

SECRET = "unit-bank-secret"
NOW = 1_800_000_000


@pytest.fixture
def request_with():
    """A request context over a bare Flask app, for the readers that look at ``request``."""
    app = Flask(__name__)

    def context(path="/", body=b""):
        return app.test_request_context(path, method="POST", data=body)

    return context


def read(body, reader, name, **options):
    """``(value, errors)`` of one reader over a body."""
    fields = Fields(body)
    value = getattr(fields, reader)(name, **options)
    return value, fields.errors


# ---- amounts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, cents",
    [
        (Decimal("0.01"), 1),
        (Decimal("100.50"), 10050),
        (Decimal("1E+2"), 10000),
        (7, 700),
        (Decimal("99999999.99"), 9999999999),
        (Decimal("1.500"), 150),  # trailing zeros are still two decimals
    ],
    ids=["one-centavo", "two-decimals", "exponent", "integer", "maximum", "trailing-zero"],
)
def test_amount_reads_exact_centavos(raw, cents):
    assert read({"amount": raw}, "amount", "amount") == (cents, {})


@pytest.mark.parametrize(
    "raw, message",
    [
        (0, "debe ser mayor que 0"),
        (Decimal("-0.00"), "debe ser mayor que 0"),
        (Decimal("-5"), "debe ser mayor que 0"),
        (Decimal("0.001"), "debe tener como máximo dos decimales"),
        (Decimal("1.005"), "debe tener como máximo dos decimales"),
        (Decimal("1E-999999"), "debe tener como máximo dos decimales"),
        (Decimal("100000000.00"), "debe ser como máximo 99999999.99"),
        (Decimal("1E+999999"), "debe ser como máximo 99999999.99"),
        (Decimal("NaN"), "debe ser mayor que 0"),
        (Decimal("Infinity"), "debe ser mayor que 0"),
        ("10.00", "debe ser un número"),
        (True, "debe ser un número"),
        ([1], "debe ser un número"),
        (None, "es obligatorio"),
    ],
    ids=[
        "zero", "negative-zero", "negative", "three-decimals", "half-centavo", "tiny-exponent",
        "above-maximum", "huge-exponent", "nan", "infinity", "string", "boolean", "list",
        "null",
    ],
)  # fmt: skip
def test_amount_refuses_what_is_not_a_positive_two_place_number(raw, message):
    assert read({"amount": raw}, "amount", "amount") == (None, {"amount": message})


# ---- strings and ids -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, message",
    [
        (5, "debe ser un texto"),
        ("   ", "no debe estar vacío"),
        ("x" * 141, "debe tener como máximo 140 caracteres"),
        ("a\nb", "no debe contener saltos de línea ni NUL"),
        ("a\rb", "no debe contener saltos de línea ni NUL"),
        ("a\x00b", "no debe contener saltos de línea ni NUL"),
        ("lone \ud800 surrogate", "debe ser texto Unicode válido"),
    ],
    ids=["number", "blank", "too-long", "lf", "cr", "nul", "lone-surrogate"],
)
def test_string_refuses_what_cannot_be_stored_or_shown(raw, message):
    value, errors = read({"description": raw}, "string", "description", max_length=140)
    assert value is None and errors == {"description": message}


def test_string_keeps_unicode_text():
    assert read({"name": "Pérez ✓ 日本"}, "string", "name", max_length=20) == ("Pérez ✓ 日本", {})


@pytest.mark.parametrize(
    "raw",
    ["a\r\nid: x", "a\nb", "a b", "ñ", "", "a" * 65, "a/b", 12, None],
    ids=["crlf-injection", "lf", "space", "non-ascii", "empty", "too-long", "slash", "number",
         "null"],
)  # fmt: skip
def test_safe_id_refuses_anything_outside_the_sse_id_alphabet(raw):
    value, errors = read({"qrId": raw}, "safe_id", "qrId")
    assert value is None and "qrId" in errors


def test_safe_id_accepts_the_whole_alphabet_up_to_64():
    good = "AZaz09_.:-" + "x" * 54
    assert read({"qrId": good}, "safe_id", "qrId") == (good, {})


def test_merchant_transaction_id_is_limited_to_30():
    assert read({"t": "a" * 30}, "safe_id", "t", max_length=30) == ("a" * 30, {})
    assert read({"t": "a" * 31}, "safe_id", "t", max_length=30)[0] is None


@pytest.mark.parametrize(
    "raw", ["BOB ", "bob", "EUR", 1, ["BOB"], {"code": "BOB"}, True],
    ids=["trailing-space", "lower-case", "unknown", "number", "list", "object", "boolean"],
)  # fmt: skip
def test_currency_accepts_only_known_codes(raw):
    assert read({"currency": raw}, "currency", "currency")[1] == {
        "currency": "debe ser uno de: BOB, USD"
    }


@pytest.mark.parametrize("raw", ["true", 1, 0, "yes"], ids=["string-true", "one", "zero", "yes"])
def test_boolean_refuses_lookalikes(raw):
    assert read({"singleUse": raw}, "boolean", "singleUse", default=True) == (
        None,
        {"singleUse": "debe ser true o false"},
    )


@pytest.mark.parametrize(
    "raw", [0, -1, 1.0, True, "1", 2**53], ids=["zero", "negative", "float", "bool", "string",
                                                  "too-big"],
)  # fmt: skip
def test_integer_refuses_what_is_not_a_positive_id(raw):
    assert read({"userId": raw}, "integer", "userId") == (
        None,
        {"userId": "debe ser un número entero positivo"},
    )


@pytest.mark.parametrize(
    "raw",
    ["a@b", "a b@c.de", "@c.de", "a@b@c.de", "x" * 250 + "@a.bo"],
    ids=["no-dot", "space", "no-local", "two-ats", "too-long"],
)
def test_email_refuses_what_is_not_an_address(raw):
    assert read({"email": raw}, "email", "email")[0] is None


def test_fields_collects_every_bad_field_in_one_failure():
    fields = Fields({"amount": "1", "currency": "EUR"})
    fields.amount("amount")
    fields.currency("currency")
    fields.string("description", max_length=10)
    with pytest.raises(ValidationFailed) as raised:
        fields.check()
    assert set(raised.value.fields) == {"amount", "currency", "description"}
    assert raised.value.status == 422


# ---- moments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-01-15T10:30:00.000Z", datetime(2026, 1, 15, 10, 30)),
        ("2026-01-15T10:30:00-04:00", datetime(2026, 1, 15, 14, 30)),
        # without an offset, La Paz time (UTC-4), as the bank's dates
        ("2026-01-15T10:30:00", datetime(2026, 1, 15, 14, 30)),
        # a bare date is the end of that day in La Paz
        ("2026-01-15", datetime(2026, 1, 16, 3, 59, 59, 999000)),
    ],
    ids=["utc", "offset", "naive-is-la-paz", "la-paz-date"],
)
def test_parse_moment_gives_naive_utc(text, expected):
    assert parse_moment(text, time(23, 59, 59, 999000)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-13-01",
        "2026-02-30T00:00:00Z",
        "tomorrow",
        "",
        "2026-01-15T10:30:00Z" + " " * 30,
        "9999-12-31",  # end of the day in La Paz is past year 9999 in UTC
        "9999-12-31T23:00:00-04:00",
        "9999-12-31T23:00:00",  # La Paz time, past year 9999 in UTC
        "0001-01-01T00:00:00+05:00",
    ],
    ids=["month-13", "feb-30", "word", "empty", "too-long", "date-overflow",
         "offset-overflow-up", "naive-overflow-up", "offset-overflow-down"],
)  # fmt: skip
def test_parse_moment_refuses_impossible_or_unrepresentable_moments(text):
    assert parse_moment(text, time(23, 59, 59)) is None


def test_moment_reader_names_the_field_for_non_strings():
    value, errors = read({"dueDate": 1700000000}, "moment", "dueDate", required=False)
    assert value is None and errors == {"dueDate": "debe ser una fecha o una fecha y hora ISO 8601"}


@pytest.mark.parametrize("raw", ["24:00", "9:30", "10:60", "10:30:00Z", 1030],
                         ids=["hour-24", "one-digit", "minute-60", "zone", "number"])  # fmt: skip
def test_time_of_day_refuses_non_times(raw):
    assert read({"paymentTime": raw}, "time_of_day", "paymentTime")[0] is None


def test_time_of_day_adds_seconds():
    assert read({"paymentTime": "10:30"}, "time_of_day", "paymentTime") == ("10:30:00", {})


# ---- the body and the query string -----------------------------------------------------


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{bad", "El cuerpo no es JSON válido"),
        (b"", "El cuerpo no es JSON válido"),
        (b"\xff\xfe\x00", "El cuerpo no es JSON válido"),
        (b'{"amount": NaN}', "El cuerpo no es JSON válido"),
        (b'{"amount": Infinity}', "El cuerpo no es JSON válido"),
        (b'{"amount": -Infinity}', "El cuerpo no es JSON válido"),
        (b'{"amount": 1' + b"0" * 5000 + b"}", "El cuerpo no es JSON válido"),
        (b'{"amount": 1E+99999999999999999999}', "El cuerpo no es JSON válido"),
        (b'{"amount": 1.5E-99999999999999999999}', "El cuerpo no es JSON válido"),
        (b"[" * 50000, "El cuerpo no es JSON válido"),
        (b"[1, 2]", "El cuerpo debe ser un objeto JSON"),
        (b'"text"', "El cuerpo debe ser un objeto JSON"),
        (b"null", "El cuerpo debe ser un objeto JSON"),
        (b"12", "El cuerpo debe ser un objeto JSON"),
    ],
    ids=[
        "malformed", "empty", "not-utf8", "nan", "infinity", "minus-infinity", "5000-digit-int",
        "exponent-beyond-decimal", "negative-exponent-beyond-decimal",
        "deep-nesting", "array", "string", "null", "number",
    ],
)  # fmt: skip
def test_json_object_refuses_anything_but_a_json_object(request_with, body, message):
    with request_with(body=body), pytest.raises(InvalidJson) as raised:
        json_object()
    assert raised.value.message == message and raised.value.status == 400


@pytest.mark.parametrize("extra", [1, 10_000], ids=["one-over", "far-over"])
def test_json_object_refuses_a_chunked_body_over_the_cap(extra):
    """No Content-Length: Werkzeug only cuts the stream at the cap; the cut must be a 413."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1024
    body = b'{"a": 1}' + b" " * (1024 - 8 + extra)
    environ = {"wsgi.input_terminated": True}
    with app.test_request_context(
        "/", method="POST", input_stream=io.BytesIO(body), environ_overrides=environ
    ):
        with pytest.raises(RequestEntityTooLarge):
            json_object()


@pytest.mark.parametrize("size", [1000, 1024], ids=["under-the-cap", "at-the-cap"])
def test_json_object_reads_a_chunked_body_up_to_the_cap(size):
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1024
    body = b'{"a": 1}' + b" " * (size - 8)
    with app.test_request_context(
        "/",
        method="POST",
        input_stream=io.BytesIO(body),
        environ_overrides={"wsgi.input_terminated": True},
    ):
        assert json_object() == {"a": 1}


def test_json_object_keeps_amounts_exact(request_with):
    with request_with(body=b'{"amount": 100.10}'):
        assert json_object() == {"amount": Decimal("100.10")}


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=%C2%B2", "limit"),  # "²": str.isdigit() says yes, int() says no
        ("limit=%D9%A1", "limit"),  # an Arabic-Indic one
        ("limit=", "limit"),
        ("cursor=x", "cursor"),
        ("cursor=%C2%B2", "cursor"),
        ("cursor=1234567890123456789", "cursor"),
    ],
    ids=[
        "limit-zero", "limit-too-big", "limit-word", "limit-negative", "limit-superscript",
        "limit-arabic-digit", "limit-empty", "cursor-word", "cursor-superscript",
        "cursor-too-long",
    ],
)  # fmt: skip
def test_page_args_name_the_bad_argument(request_with, query, field):
    with request_with(f"/?{query}"), pytest.raises(ValidationFailed) as raised:
        page_args()
    assert list(raised.value.fields) == [field]


def test_page_args_read_a_good_page(request_with):
    with request_with("/?limit=10&cursor=42"):
        assert page_args() == (10, 42)


# ---- bank signatures ---------------------------------------------------------------------


def test_bank_signature_round_trip():
    body = b'{"qrId": "1"}'
    header = bank_signature.sign(SECRET, body, NOW)
    assert bank_signature.verify(SECRET, body, header, None, now=NOW + 300)


@pytest.mark.parametrize(
    "header",
    [
        "t=abc,v1=00",
        "t=²,v1=00",  # latin-1 header bytes can decode to non-ASCII "digits"
        "t=1800000000",
        "v1=00",
        "garbage",
        ",,,==",
        "t=1800000000,v1=",
        "t=1800000000,v1=é",
        "t=9999999999999,v1=00",
        "",
    ],
    ids=[
        "word-timestamp", "superscript-timestamp", "no-mac", "no-timestamp", "garbage",
        "only-separators", "empty-mac", "non-ascii-mac", "huge-timestamp", "empty",
    ],
)  # fmt: skip
def test_bank_signature_refuses_malformed_headers_without_raising(header):
    assert not bank_signature.verify(SECRET, b"{}", header, None, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301], ids=["too-old", "too-new"])
def test_bank_signature_refuses_timestamps_more_than_300_s_off(skew):
    body = b"{}"
    header = bank_signature.sign(SECRET, body, NOW + skew)
    assert not bank_signature.verify(SECRET, body, header, None, now=NOW)


def test_bank_signature_is_bound_to_the_body_and_the_secret():
    header = bank_signature.sign(SECRET, b'{"amount": 1}', NOW)
    assert not bank_signature.verify(SECRET, b'{"amount": 9}', header, None, now=NOW)
    other = bank_signature.sign("another-secret", b"{}", NOW)
    assert not bank_signature.verify(SECRET, b"{}", other, None, now=NOW)


@pytest.mark.parametrize(
    "authorization, accepted",
    [
        (f"Bearer {SECRET}", True),
        (f"bearer {SECRET}", True),
        ("Bearer wrong-secret", False),
        (f"Bearer {SECRET}x", False),
        (f"Basic {SECRET}", False),
        ("Bearer ", False),
        ("Bearer é", False),
        (None, False),
    ],
    ids=["bearer", "lower-case-scheme", "wrong", "longer", "basic", "empty", "non-ascii",
         "absent"],
)  # fmt: skip
def test_static_bearer_secret_must_match_exactly(authorization, accepted):
    assert bank_signature.verify(SECRET, b"{}", None, authorization, now=NOW) is accepted


def test_a_signature_header_is_not_rescued_by_a_bearer_secret():
    """A wrong signature is a refusal even beside the right static secret: one form per call."""
    assert not bank_signature.verify(SECRET, b"{}", "t=1,v1=00", f"Bearer {SECRET}", now=NOW)


# ---- any JSON value at all -----------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
READERS = [
    ("string", {"max_length": 20}),
    ("safe_id", {}),
    ("email", {}),
    ("integer", {}),
    ("boolean", {"default": True}),
    ("amount", {}),
    ("currency", {}),
    ("choice", {"choices": ("used", "completed")}),
    ("moment", {"required": False}),
    ("time_of_day", {}),
]


@pytest.mark.parametrize("reader, options", READERS, ids=[r for r, _ in READERS])
@settings(max_examples=150, deadline=None)
@given(value=JSON_VALUES)
def test_every_reader_takes_any_json_value_without_raising(reader, options, value):
    fields = Fields({"field": value})
    result = getattr(fields, reader)("field", **options)
    assert (result is None) or ("field" not in fields.errors)
    if "field" in fields.errors:
        assert isinstance(fields.errors["field"], str)


@pytest.mark.parametrize(
    "raw",
    ["2024011", "20241301", "2024-02-30", "١٢٣٤٥٦٧٨", "yesterday", "", 20240101,
     "9999-12-31T23:00:00", "0001-01-01T01:00:00+05:00"],
    ids=["seven-digits", "month-13", "feb-30", "arabic-indic-digits", "word", "empty",
         "number", "la-paz-past-9999", "offset-before-year-1"],
)  # fmt: skip
def test_bank_moment_names_the_date_it_cannot_place(raw):
    fields = Fields({"paymentDate": raw, "paymentTime": "10:30:00"})
    assert fields.bank_moment("paymentDate", "paymentTime") == (None, None)
    assert set(fields.errors) == {"paymentDate"}
