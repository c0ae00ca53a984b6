"""Peewee models and the database binding (no business rules here)."""

from .db import bind_database, connection, database, supports_row_locks
from .prepared import PreparedQuery
from .tables import (
    MOVEMENT_TYPES,
    QR_STATUSES,
    TABLES,
    Account,
    ApiKey,
    BankLink,
    Event,
    Movement,
    Payment,
    Qr,
    RefreshToken,
    StreamTicket,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = [
    "MOVEMENT_TYPES",
    "QR_STATUSES",
    "TABLES",
    "Account",
    "ApiKey",
    "BankLink",
    "Event",
    "Movement",
    "Payment",
    "PreparedQuery",
    "Qr",
    "RefreshToken",
    "StreamTicket",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "bind_database",
    "connection",
    "database",
    "supports_row_locks",
]
