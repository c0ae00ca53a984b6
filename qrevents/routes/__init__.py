"""Blueprints: parse, authorize, call a service, shape the envelope; nothing more."""

from . import accounts, admin, auth, bank, events, health, payments, qr

BLUEPRINTS = (
    auth.bp,
    accounts.bp,
    qr.bp,
    bank.bp,
    payments.bp,
    events.bp,
    admin.bp,
    health.bp,
)
