"""Python client for qrevents: the account's event stream, the REST API, webhook checks."""

__version__ = "0.1.0"

from .client import Page, QrEventsClient  # noqa: E402
from .errors import (  # noqa: E402
    AuthError,
    BankError,
    Conflict,
    Forbidden,
    NotFound,
    QrEventsError,
    RateLimited,
    Unavailable,
    ValidationError,
    WebhookSignatureError,
)
from .host_tokens import host_token  # noqa: E402
from .stream import Event, EventStream  # noqa: E402
from .webhooks import verify_webhook  # noqa: E402

__all__ = [
    "AuthError",
    "BankError",
    "Conflict",
    "Event",
    "EventStream",
    "Forbidden",
    "NotFound",
    "Page",
    "QrEventsClient",
    "QrEventsError",
    "RateLimited",
    "Unavailable",
    "ValidationError",
    "WebhookSignatureError",
    "__version__",
    "host_token",
    "verify_webhook",
]
