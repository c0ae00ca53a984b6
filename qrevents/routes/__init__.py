"""Blueprints: parse, authorize, call a service, shape the envelope; nothing more."""

from . import (
    accounts,
    admin,
    auth,
    bank,
    dashboard,
    events,
    health,
    metrics,
    openapi,
    payments,
    qr,
    qr_image,
    webhooks,
)
from .converters import CONVERTERS

__all__ = ["BLUEPRINTS", "CONVERTERS"]

BLUEPRINTS = (
    auth.bp,
    accounts.bp,
    qr.bp,
    qr_image.bp,
    bank.bp,
    payments.bp,
    events.bp,
    admin.bp,
    health.bp,
    dashboard.bp,
    openapi.bp,
    metrics.bp,
    webhooks.bp,
)
