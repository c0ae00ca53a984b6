"""The OpenAPI 3.1 description of the REST API, the SSE stream and its event catalog.

Hand-written, so it says what clients may rely on; ``tests/test_openapi.py`` keeps it true to
the code (every route and method, and every response the server sends, validated against
it) and schemathesis fuzzes the live server with it. Request schemas are never stricter
than the code: anything they forbid, the server refuses.
"""

from models import MOVEMENT_TYPES

from . import __version__, bodies
from .events import AMOUNT as AMOUNT_OUT
from .events import (
    BOOLEAN,
    CURRENCY,
    DURABLE_TYPES,
    EVENT_TYPES,
    INTEGER,
    MOMENT,
    QR_STATUS,
    STRING,
)
from .validation import SAFE_ID_PATTERN


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema):
    return {**schema, "type": [schema["type"], "null"]}


def _object(properties, required=None, **extra):
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        **extra,
    }


SAFE_ID = {"type": "string", "pattern": SAFE_ID_PATTERN, "maxLength": 64}
ROW_ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


def _string(max_length, **extra):
    return {"type": "string", "minLength": 1, "maxLength": max_length, **extra}


SCHEMAS = {
    "BankLink": _object(
        {
            "accountId": ROW_ID,
            "adapter": STRING,
            "baseUrl": STRING,
            "userName": STRING,
            "branchCode": {"type": ["string", "null"]},
            "createdAt": MOMENT,
            "updatedAt": MOMENT,
        },
        additionalProperties=False,
    ),
    "Error": _object(
        {
            "success": {"const": False},
            "message": STRING,
            "data": {"type": ["object", "null"]},
            "error": _object(
                {
                    "code": STRING,
                    "fields": {
                        "type": "object",
                        "additionalProperties": STRING,
                        "description": "One message per bad field (validation errors only)",
                    },
                },
                required=["code"],
            ),
        }
    ),
    "Account": _object(
        {
            "id": INTEGER,
            "name": STRING,
            "currency": CURRENCY,
            "balance": AMOUNT_OUT,
            "availableBalance": {
                **AMOUNT_OUT,
                "description": "balance minus payments held for review",
            },
        }
    ),
    "User": _object({"id": INTEGER, "email": STRING, "name": STRING, "accountId": INTEGER}),
    "ApiKey": _object(
        {
            "id": INTEGER,
            "name": STRING,
            "prefix": STRING,
            "createdAt": MOMENT,
            "expiresAt": _nullable(MOMENT),
            "revokedAt": _nullable(MOMENT),
        }
    ),
    "NewApiKey": {
        "allOf": [
            _ref("ApiKey"),
            _object({"key": {**STRING, "description": "Shown once, never again"}}),
        ]
    },
    "Qr": _object(
        {
            "qrId": {**STRING, "pattern": "^[0-9]{20}$", "description": "YYMMDD (UTC) + 14 digits"},
            "transactionId": STRING,
            "amount": AMOUNT_OUT,
            "currency": CURRENCY,
            "description": STRING,
            "dueDate": MOMENT,
            "singleUse": BOOLEAN,
            "modifyAmount": BOOLEAN,
            "status": QR_STATUS,
            "createdAt": MOMENT,
        }
    ),
    "Payment": _object(
        {
            "transactionId": STRING,
            "qrId": STRING,
            "amount": AMOUNT_OUT,
            "currency": CURRENCY,
            "senderName": STRING,
            "senderDocumentId": STRING,
            "senderAccount": STRING,
            "senderBankCode": STRING,
            "description": STRING,
            "paymentDate": MOMENT,
            "paymentTime": {**STRING, "description": "HH:MM:SS"},
            "review": {**BOOLEAN, "description": "Held: counts in balance, not in available"},
            "reviewReason": {
                "type": ["string", "null"],
                "description": "qr_<status>, past_due_date or amount_mismatch",
            },
            "releasedAt": _nullable(MOMENT),
            "createdAt": MOMENT,
        }
    ),
    "Movement": _object(
        {
            "seq": INTEGER,
            "movementType": {"type": "string", "enum": list(MOVEMENT_TYPES)},
            "amount": AMOUNT_OUT,
            "balance": AMOUNT_OUT,
            "availableBalance": AMOUNT_OUT,
            "description": STRING,
            "qrId": _nullable(STRING),
            "transactionId": _nullable(STRING),
            "createdAt": MOMENT,
        }
    ),
    "Login": _object(
        {
            "accessToken": STRING,
            "tokenType": {"const": "Bearer"},
            "expiresIn": INTEGER,
            "refreshExpiresIn": {
                **INTEGER,
                "description": "Seconds until the sign-in ends (the refresh cookie's life); "
                "renewing does not extend it",
            },
            "userId": INTEGER,
            "accountId": INTEGER,
        }
    ),
    "PaymentSummary": _object(
        {
            "period": {"type": "string", "enum": ["day", "week"]},
            "from": {**STRING, "format": "date", "description": "First La Paz day counted"},
            "to": {**STRING, "format": "date", "description": "Last La Paz day counted"},
            "timeZone": {"const": "America/La_Paz"},
            "currency": {"type": "string", "enum": ["BOB", "USD"]},
            "count": INTEGER,
            "total": AMOUNT_OUT,
            "average": {**_nullable(AMOUNT_OUT), "description": "Halves rounded up; null: none"},
            "buckets": {
                "type": "array",
                "description": "24 hours (day) or 7 days (week), in order",
                "items": _object(
                    {
                        "start": {
                            **STRING,
                            "description": "La Paz time, e.g. 2026-01-15T09:00:00-04:00",
                        },
                        "count": INTEGER,
                        "total": AMOUNT_OUT,
                    }
                ),
            },
        }
    ),
    "Ticket": _object(
        {
            "ticket": STRING,
            "expiresIn": INTEGER,
            "accountId": INTEGER,
            "cookieExpiresIn": INTEGER,
        }
    ),
    "Stats": _object(
        {
            "totalConnections": INTEGER,
            "accountsWithSubscriptions": INTEGER,
            "subscriptionsByAccount": {"type": "object", "additionalProperties": INTEGER},
            "yourAccountId": {"type": ["integer", "null"]},
            "timestamp": MOMENT,
        }
    ),
    "Webhook": _object(
        {
            "id": INTEGER,
            "url": STRING,
            "description": _nullable(STRING),
            "events": {
                "type": ["array", "null"],
                "items": {"type": "string", "enum": list(DURABLE_TYPES)},
                "description": "The event types sent; null: every durable type",
            },
            "enabled": BOOLEAN,
            "disabledReason": {
                "type": ["string", "null"],
                "enum": ["retries_exhausted", "disabled_by_user", "secret_unreadable", None],
                "description": "Why it is disabled: 3 days of failures, a user, or a secret "
                "sealed under another QREVENTS_SECRET_KEY (register it again)",
            },
            "disabledAt": _nullable(MOMENT),
            "lastError": {
                "type": ["string", "null"],
                "description": "The last failed attempt's error while it keeps failing",
            },
            "failedAttempts": {**INTEGER, "description": "At the event now being retried"},
            "nextAttemptAt": _nullable(MOMENT),
            "createdAt": MOMENT,
        }
    ),
    "NewWebhook": {
        "allOf": [
            _ref("Webhook"),
            _object(
                {
                    "secret": {
                        **STRING,
                        "pattern": "^whsec_",
                        "description": "Signs every delivery; shown once, never again",
                    }
                }
            ),
        ]
    },
    "WebhookDelivery": _object(
        {
            "deliveryId": {**STRING, "description": "As sent in X-QrEvents-Delivery-Id"},
            "eventId": STRING,
            "eventSeq": INTEGER,
            "attempt": {**INTEGER, "description": "1 for the first attempt at this event"},
            "statusCode": {"type": ["integer", "null"], "description": "null: no answer"},
            "latencyMs": INTEGER,
            "error": {"type": ["string", "null"], "description": "Why it failed (Spanish)"},
            "succeeded": BOOLEAN,
            "createdAt": MOMENT,
        }
    ),
    "Health": _object(
        {
            "database": {"type": "string", "enum": ["ok", "down"]},
            "broker": {"type": "string", "enum": ["ok", "down"]},
            "version": {**STRING, "description": "qrevents' version, as `qrevents.__version__`"},
        }
    ),
}


def _page(item):
    return _object(
        {"items": {"type": "array", "items": _ref(item)}, "nextCursor": _nullable(STRING)}
    )


def _envelope(data, **extra):
    return _object(
        {"success": {"const": True}, "message": STRING, "data": data, **extra},
    )


def _json(schema, description, headers=None):
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


SET_COOKIE = {
    "Set-Cookie": {
        "description": "The stream cookie, once per stream path",
        "schema": STRING,
    }
}

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}

ERRORS = {
    400: "The body is not a JSON object (`invalid_json`)",
    401: "`missing_credentials`, `invalid_credentials`, `token_expired`, `key_revoked`",
    403: "Not for this credential (`forbidden`): managing API keys or webhooks needs a user's "
    "JWT; a host application's token only reads",
    404: "No such resource in the caller's account",
    409: "Conflicts with the current state (`transaction_id_reused`, `invalid_transition`, "
    "`bank_not_linked`, ...)",
    413: "The body is larger than 64 KiB",
    422: "Some fields are not valid (`validation_failed`, with `error.fields`)",
    429: "Rate limited; wait `Retry-After` seconds",
    502: "The bank refused (`bank_rejected`); `message` carries the bank's own message",
    503: "A dependency is down, the server is shutting down, or it is too busy (`Retry-After`)",
    504: "The bank did not answer in time (`bank_unavailable`); nothing was recorded",
}


def _error(status, description=None):
    headers = RETRY_AFTER if status == 429 else None
    return _json(_ref("Error"), description or ERRORS[status], headers)


def _operation(summary, ok, *errors, body=None, params=(), security="account", tags=()):
    """One operation: its success responses (``{status: response}``) and its error statuses."""
    responses = {str(status): response for status, response in ok.items()}
    statuses = set(errors) | {429}
    if body is not None:
        statuses |= {400, 413, 422}
    if security != "none":
        statuses |= {401}
    for status in sorted(statuses):
        responses[str(status)] = _error(status)
    operation = {"summary": summary, "responses": responses, "tags": list(tags)}
    if params:
        operation["parameters"] = list(params)
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    operation["security"] = SECURITY[security]
    return operation


SECURITY = {
    "account": [{"bearer": []}, {"apiKeyHeader": []}, {"apiKeyQuery": []}, {"tokenQuery": []}],
    "stream": [
        {"bearer": []},
        {"apiKeyHeader": []},
        {"apiKeyQuery": []},
        {"tokenQuery": []},
        {"ticketQuery": []},
        {"streamCookie": []},
    ],
    "user": [{"bearer": []}, {"tokenQuery": []}],
    "admin": [{"admin": []}],
    "stats": [{"bearer": []}, {"apiKeyHeader": []}, {"apiKeyQuery": []}, {"tokenQuery": []}],
    "bank": [{"bankSignature": []}, {"bankBearer": []}],
    "refresh": [{"refreshCookie": []}],
    "none": [],
}

LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
}
CURSOR = {
    "name": "cursor",
    "in": "query",
    "description": "`nextCursor` of the previous page",
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
}


def _query_param(name, schema, description):
    return {"name": name, "in": "query", "schema": schema, "description": description}


LA_PAZ_DAY = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
AMOUNT_QUERY = {"type": "string", "pattern": "^[0-9]{1,8}(\\.[0-9]{1,2})?$"}
PAYMENT_FILTERS = [
    _query_param("from", LA_PAZ_DAY, "First La Paz day of the bank's payment date (inclusive)"),
    _query_param("to", LA_PAZ_DAY, "Last La Paz day (inclusive), not before `from`"),
    _query_param("minAmount", AMOUNT_QUERY, "Smallest amount (inclusive), a dot before cents"),
    _query_param("maxAmount", AMOUNT_QUERY, "Largest amount (inclusive), not below minAmount"),
    _query_param(
        "payer",
        {"type": "string", "minLength": 1, "maxLength": 120},
        "Part of the payer's name, any case",
    ),
]
CSV_COLUMNS_TEXT = (
    "transactionId, qrId, description, amount (a dot before cents), currency, senderName, "
    "senderDocumentId, senderAccount, senderBankCode, paymentDate and createdAt (ISO 8601 UTC), "
    "review (true/false), reviewReason, releasedAt"
)


def _path_param(name, schema, description=None):
    param = {"name": name, "in": "path", "required": True, "schema": schema}
    if description:
        param["description"] = description
    return param


QR_ID = _path_param("qrId", SAFE_ID)

LOGIN_BODY = bodies.LOGIN.schema()
API_KEY_BODY = bodies.API_KEY.schema()
ADMIN_API_KEY_BODY = bodies.ADMIN_API_KEY.schema()
WEBHOOK_BODY = bodies.WEBHOOK.schema()
WEBHOOK_CHANGE_BODY = bodies.WEBHOOK_CHANGE.schema()
REPLAY_BODY = bodies.REPLAY.schema()
QR_BODY = bodies.QR.schema()
PAYMENT_NOTICE = bodies.PAYMENT_NOTICE.schema()
PAYMENT_BODY = {
    "description": 'Flat, or wrapped as BANECO sends it: `{"payment": {...}}`',
    "anyOf": [PAYMENT_NOTICE, _object({"payment": PAYMENT_NOTICE})],
}
QR_STATUS_BODY = bodies.QR_STATUS.schema()
ACCOUNT_BODY = bodies.ACCOUNT.schema()
USER_BODY = bodies.USER.schema()

BANK_EXTRA = {"responseCode": {"const": 0, "description": "What BANECO's callback expects"}}
BANK_LINK_BODY = bodies.BANK_LINK.schema()


def _event_catalog():
    """``x-sse-events``: each event type, its SSE ``id:`` and the schema of its ``data``, as
    the event registry declares them."""
    return {
        name: {"id": event.id_template, "idPattern": event.id_pattern, "data": event.data_schema}
        for name, event in EVENT_TYPES.items()
    }


STREAM_DESCRIPTION = """\
Server-Sent Events of the caller's account. The first bytes are a `retry:` line and the
`connection` event. Durable events (`qr_*`, `account_balance_update`) carry an SSE `id:`;
reconnect with `Last-Event-ID` (header) or `?lastEventId=` to get every missed event once, in
order, then live ones. When the given id cannot be resumed, `resync_required` follows
`connection` (reason `unknown` or `expired`): reload state over REST. `connection`,
`heartbeat`, `resync_required` and `stream_closed` carry no id. The server ends a stream with
`stream_closed` (reason `token_expired`, `key_revoked`, `server_shutdown`, `slow_consumer`,
`overloaded`, `too_many_streams` or `replay_failed`), then closes the connection
(`Connection: close`). A stream refused for a passing reason (the server is draining, no
database connection in time, the account's stream limit, a replay that cannot be read) is
also a 200: a jittered `retry:` (15-30 s for the limit, 1-3 s otherwise), `stream_closed`,
and the end, because a browser's EventSource gives up for good on any other status. Only a
credential failure is an HTTP error (401). Event types, ids and data keys: `x-sse-events`."""


def _stream_operation():
    operation = _operation(
        "Live events of the caller's account (SSE)",
        {
            200: {
                "description": STREAM_DESCRIPTION,
                "content": {"text/event-stream": {"schema": STRING}},
            }
        },
        params=[
            {"name": "lastEventId", "in": "query", "schema": STRING},
            {"name": "Last-Event-ID", "in": "header", "schema": STRING},
            {"name": "ticket", "in": "query", "schema": STRING},
            {
                "name": "accountId",
                "in": "query",
                "description": "Which stream cookie to use when the browser holds several",
                "schema": INTEGER,
            },
        ],
        security="stream",
        tags=["events"],
    )
    del operation["responses"]["429"]  # the stream is not rate limited; its limit is a 200
    operation["x-sse-events"] = _event_catalog()
    return operation


def _paths():
    ok = _json
    account_ops = {
        "/accounts/me": {
            "get": _operation(
                "The caller's account",
                {200: ok(_envelope(_ref("Account")), "The account")},
                404,
                tags=["accounts"],
            )
        },
        "/accounts/me/movements": {
            "get": _operation(
                "The ledger, newest first",
                {200: ok(_envelope(_page("Movement")), "A page of movements")},
                422,
                params=[LIMIT, CURSOR],
                tags=["accounts"],
            )
        },
        "/api-keys": {
            "post": _operation(
                "Create an API key of the caller's user (the key is shown once); a user's JWT only",
                {201: ok(_envelope(_ref("NewApiKey")), "Created")},
                403,
                404,
                body=API_KEY_BODY,
                tags=["accounts"],
            ),
            "get": _operation(
                "The account's API keys (never the keys themselves)",
                {200: ok(_envelope(_page("ApiKey")), "Every key, newest first")},
                tags=["accounts"],
            ),
        },
        "/api-keys/{keyId}": {
            "delete": _operation(
                "Revoke an API key; its open streams end with `key_revoked`; a user's JWT only",
                {200: ok(_envelope(_ref("ApiKey")), "Revoked")},
                403,
                404,
                params=[_path_param("keyId", ROW_ID)],
                tags=["accounts"],
            )
        },
    }
    qr_ops = {
        "/qr": {
            "post": _operation(
                "Ask the account's bank for a QR, then record it `active`; emits `qr_created` "
                "(nothing when the bank refuses or does not answer)",
                {
                    201: ok(_envelope(_ref("Qr")), "Created"),
                    200: ok(
                        _envelope(_ref("Qr")),
                        "Already created with this transactionId (the bank is not asked again)",
                    ),
                },
                409,
                502,
                504,
                body=QR_BODY,
                tags=["qr"],
            ),
            "get": _operation(
                "The account's QRs, newest first",
                {200: ok(_envelope(_page("Qr")), "A page of QRs")},
                422,
                params=[
                    {
                        "name": "status",
                        "in": "query",
                        "schema": QR_STATUS,
                    },
                    LIMIT,
                    CURSOR,
                ],
                tags=["qr"],
            ),
        },
        "/qr/{qrId}": {
            "get": _operation(
                "One QR",
                {200: ok(_envelope(_ref("Qr")), "The QR")},
                404,
                422,
                params=[QR_ID],
                tags=["qr"],
            )
        },
        "/qr/{qrId}/image.png": {
            "get": _operation(
                "The QR's picture as the bank issued it (what a payer scans); cacheable",
                {
                    200: {
                        "description": "The bank's PNG",
                        "content": {
                            "image/png": {"schema": {"type": "string", "format": "binary"}}
                        },
                    }
                },
                404,
                422,
                params=[QR_ID],
                tags=["qr"],
            )
        },
        "/qr/{qrId}/cancel": {
            "post": _operation(
                "Cancel an active QR at the bank, then here; emits `qr_status_change` "
                "(syncSource `user`). A refusal by the bank is 409 `bank_rejected` and syncs "
                "the QR's status from the bank",
                {200: ok(_envelope(_ref("Qr")), "Cancelled")},
                404,
                409,
                422,
                504,
                params=[QR_ID],
                tags=["qr"],
            )
        },
    }
    payment_notice = _operation(
        "The bank notifies a payment: recorded once, credited, maybe held for review; emits "
        "`qr_payment`, `account_balance_update` and, for a single-use QR, `qr_status_change`. "
        "Signed (or with the bearer secret) it is the bank's word. Without either (BANECO's "
        "own notification) it is a trigger: the bank is asked (statusQR) and only the "
        "payments it lists are recorded, with its amounts; not confirmed: 409 "
        "`payment_not_confirmed`; rate-limited per address. Every answer carries "
        "`responseCode` (0 recorded, 1 not: the bank retries)",
        {
            200: ok(
                _envelope(
                    _ref("Payment"),
                    duplicate={**BOOLEAN, "description": "A retry of a recorded payment"},
                    **BANK_EXTRA,
                ),
                "Recorded (or already recorded: `duplicate: true`)",
            )
        },
        404,
        409,
        502,
        504,
        body=PAYMENT_BODY,
        security="bank",
        tags=["bank"],
    )
    payment_notice["security"] = SECURITY["bank"] + [{}]  # {}: unsigned, a trigger
    bank_ops = {
        "/bank/payments": {"post": payment_notice},
        "/hooks/baneco/notifyPayment": {"post": payment_notice},
        "/api/qrsimple/notifyPaymentQR": {"post": payment_notice},
        "/bank/qr-status": {
            "post": _operation(
                "The bank syncs a QR's status; emits `qr_status_change` (syncSource `bank_api`)",
                {
                    200: ok(
                        _envelope(
                            _ref("Qr"),
                            changed={**BOOLEAN, "description": "false: it had that status"},
                            **BANK_EXTRA,
                        ),
                        "Synced",
                    )
                },
                404,
                409,
                body=QR_STATUS_BODY,
                security="bank",
                tags=["bank"],
            )
        },
        "/payments": {
            "get": _operation(
                "The account's payments, newest first, filtered by La Paz day, amount and payer",
                {200: ok(_envelope(_page("Payment")), "A page of payments")},
                422,
                params=[*PAYMENT_FILTERS, LIMIT, CURSOR],
                tags=["payments"],
            )
        },
        "/payments.csv": {
            "get": _operation(
                "Every matching payment as CSV, oldest first, streamed: UTF-8 with a BOM, "
                f"CRLF lines, a header row, then the columns {CSV_COLUMNS_TEXT}. A text cell "
                "starting with = + - @ gets a leading ' (no spreadsheet formula)",
                {
                    200: {
                        "description": "The CSV file (Content-Disposition: attachment)",
                        "content": {"text/csv": {"schema": STRING}},
                    }
                },
                422,
                params=PAYMENT_FILTERS,
                tags=["payments"],
            )
        },
        "/payments/summary": {
            "get": _operation(
                "Collected in a La Paz day, per hour, or in the 7 days ending with it, per "
                "day (one query): total, count, average",
                {200: ok(_envelope(_ref("PaymentSummary")), "The summary")},
                422,
                params=[
                    _query_param(
                        "period", {"type": "string", "enum": ["day", "week"]}, "Default day"
                    ),
                    _query_param("date", LA_PAZ_DAY, "The (last) La Paz day; default today"),
                    _query_param(
                        "currency",
                        {"type": "string", "enum": ["BOB", "USD"]},
                        "Default: the account's",
                    ),
                ],
                tags=["payments"],
            )
        },
        "/payments/{transactionId}/release": {
            "post": _operation(
                "Release a payment held for review; emits `account_balance_update` "
                "(movementType `review_release`)",
                {200: ok(_envelope(_ref("Payment")), "Released")},
                404,
                409,
                422,
                params=[_path_param("transactionId", SAFE_ID)],
                tags=["payments"],
            )
        },
    }
    stats = _operation(
        "Open streams: totals, and the caller's own account (the admin sees every account)",
        {200: ok(_envelope(_ref("Stats")), "Stream statistics")},
        security="stats",
        tags=["events"],
    )
    stats["security"] = SECURITY["stats"] + SECURITY["admin"]
    ticket = _operation(
        "A single-use ticket, valid 60 s, for `?ticket=` on the stream, and the stream cookie",
        {
            201: ok(
                _envelope(_ref("Ticket")),
                "Issued. Also sets the stream cookie `qrevents_stream_<accountId>` (HttpOnly, "
                "SameSite=Strict, Secure in production, Path each stream route) that opens "
                "streams until `cookieExpiresIn` seconds: never past the credential's expiry, "
                "and refused once its API key is revoked",
                headers=SET_COOKIE,
            )
        },
        tags=["events"],
    )
    stream = _stream_operation()
    event_ops = {}
    for prefix in ("", "/api"):
        event_ops[f"{prefix}/events/stream"] = {"get": stream}
        event_ops[f"{prefix}/events/stats"] = {"get": stats}
        event_ops[f"{prefix}/events/ticket"] = {"post": ticket}
    admin_ops = {
        "/admin/accounts": {
            "post": _operation(
                "Create an account",
                {201: ok(_envelope(_ref("Account")), "Created")},
                body=ACCOUNT_BODY,
                security="admin",
                tags=["admin"],
            )
        },
        "/admin/accounts/{accountId}/users": {
            "post": _operation(
                "Create a user of an account",
                {201: ok(_envelope(_ref("User")), "Created")},
                404,
                409,
                body=USER_BODY,
                params=[_path_param("accountId", ROW_ID)],
                security="admin",
                tags=["admin"],
            )
        },
        "/admin/accounts/{accountId}/api-keys": {
            "post": _operation(
                "Create an API key of an account (the key is shown once)",
                {201: ok(_envelope(_ref("NewApiKey")), "Created")},
                404,
                body=ADMIN_API_KEY_BODY,
                params=[_path_param("accountId", ROW_ID)],
                security="admin",
                tags=["admin"],
            )
        },
    }
    admin_ops["/admin/accounts/{accountId}/bank"] = {
        "post": _operation(
            "Link an account to its bank (or replace the link); secrets are stored encrypted "
            "and never returned",
            {
                201: ok(_envelope(_ref("BankLink")), "Linked"),
                200: ok(_envelope(_ref("BankLink")), "Link replaced"),
            },
            404,
            body=BANK_LINK_BODY,
            params=[_path_param("accountId", ROW_ID)],
            security="admin",
            tags=["admin"],
        )
    }
    other_ops = {
        "/auth/login": {
            "post": _operation(
                "Email and password for a JWT (default lifetime 1 h); also sets the refresh "
                "cookie `qrevents_refresh` (HttpOnly, SameSite=Strict, Path=/auth, Secure in "
                "production) for the sign-in's working day",
                {200: ok(_envelope(_ref("Login")), "Logged in")},
                401,
                body=LOGIN_BODY,
                security="none",
                tags=["auth"],
            )
        },
        "/auth/refresh": {
            "post": _operation(
                "The refresh cookie for a new JWT; the cookie is rotated (a used one presented "
                "again is refused and revokes the whole sign-in)",
                {200: ok(_envelope(_ref("Login")), "Renewed")},
                401,
                security="refresh",
                tags=["auth"],
            )
        },
        "/auth/logout": {
            "post": _operation(
                "Revoke the sign-in of the refresh cookie, if any, and clear the cookie",
                {200: ok(_envelope({"type": "null"}), "Signed out")},
                security="none",
                tags=["auth"],
            )
        },
        "/health": {
            "get": _operation(
                "Liveness: the database and the broker are reachable",
                {
                    200: ok(_envelope(_ref("Health")), "Both reachable"),
                    503: ok(_ref("Error"), "Something is down; `data` says what"),
                },
                security="none",
                tags=["operations"],
            )
        },
        "/metrics": {
            "get": _operation(
                "Prometheus metrics (text exposition format)",
                {200: {"description": "Metrics", "content": {"text/plain": {"schema": STRING}}}},
                security="admin",
                tags=["operations"],
            )
        },
        "/openapi.json": {
            "get": _operation(
                "This description",
                {
                    200: {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
                security="none",
                tags=["operations"],
            )
        },
        "/dashboard": {
            "get": _operation(
                "The live dashboard page",
                {200: {"description": "HTML", "content": {"text/html": {"schema": STRING}}}},
                security="none",
                tags=["operations"],
            )
        },
    }
    return {
        **other_ops,
        **account_ops,
        **qr_ops,
        **bank_ops,
        **event_ops,
        **admin_ops,
        **_webhook_ops(),
    }


def _webhook_ops():
    ok = _json
    endpoint = _path_param("webhookId", ROW_ID)
    tags = ["webhooks"]
    return {
        "/webhooks": {
            "post": _operation(
                "Register an endpoint for the account's events (a user's JWT; the secret is "
                "shown once). Deliveries: docs/CONTRACT.md, webhooks",
                {201: ok(_envelope(_ref("NewWebhook")), "Registered")},
                403,
                body=WEBHOOK_BODY,
                security="user",
                tags=tags,
            ),
            "get": _operation(
                "The account's endpoints, newest first (never their secrets)",
                {200: ok(_envelope(_page("Webhook")), "Every endpoint")},
                403,
                security="user",
                tags=tags,
            ),
        },
        "/webhooks/{webhookId}": {
            "get": _operation(
                "One endpoint, with why it is disabled if it is",
                {200: ok(_envelope(_ref("Webhook")), "The endpoint")},
                403,
                404,
                params=[endpoint],
                security="user",
                tags=tags,
            ),
            "patch": _operation(
                "Change the URL, the event types, the description, or enable/disable it",
                {200: ok(_envelope(_ref("Webhook")), "Changed")},
                403,
                404,
                body=WEBHOOK_CHANGE_BODY,
                params=[endpoint],
                security="user",
                tags=tags,
            ),
            "delete": _operation(
                "Delete the endpoint and its delivery log",
                {200: ok(_envelope(_ref("Webhook")), "Deleted")},
                403,
                404,
                params=[endpoint],
                security="user",
                tags=tags,
            ),
        },
        "/webhooks/{webhookId}/deliveries": {
            "get": _operation(
                "Delivery attempts, newest first",
                {200: ok(_envelope(_page("WebhookDelivery")), "A page of attempts")},
                403,
                404,
                422,
                params=[endpoint, LIMIT, CURSOR],
                security="user",
                tags=tags,
            )
        },
        "/webhooks/{webhookId}/replay": {
            "post": _operation(
                "Deliver again from an event on (the cursor moves to just before it)",
                {200: ok(_envelope(_ref("Webhook")), "Replay scheduled")},
                403,
                404,
                body=REPLAY_BODY,
                params=[endpoint],
                security="user",
                tags=tags,
            )
        },
    }


SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`qrk_...`) or a JWT from `POST /auth/login`",
    },
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api-key"},
    "tokenQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "A JWT or an API key; prefer a stream ticket in URLs",
    },
    "ticketQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "ticket",
        "description": "From `POST /events/ticket`: one connection, 60 s; the stream only",
    },
    "streamCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "qrevents_stream_<accountId>",
        "description": "Set by `POST /events/ticket`; used when no other credential is given, "
        "so a native EventSource reconnects by itself; the stream only",
    },
    "refreshCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "qrevents_refresh",
        "description": "Set by `POST /auth/login` and `POST /auth/refresh`; `/auth` only",
    },
    "admin": {
        "type": "http",
        "scheme": "bearer",
        "description": "The deployment's admin key (QREVENTS_ADMIN_API_KEY), as "
        "`Authorization: Bearer` only: in X-API-Key or a URL it is refused (401)",
    },
    "bankSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Bank-Signature",
        "description": '`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` keyed '
        "with QREVENTS_BANK_WEBHOOK_SECRET; more than 300 s off is refused",
    },
    "bankBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The webhook secret itself, for banks that send only a static credential",
    },
}


def build_spec():
    """The whole OpenAPI document as a dict (built once per app, served as JSON)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qrevents",
            "version": __version__,
            "description": "Real-time events of a QR payment backend. Every JSON response is "
            "the envelope `{success, message, data}`; errors add `error: {code, fields?}`.",
        },
        "paths": _paths(),
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }
