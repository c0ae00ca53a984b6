"""Prometheus metrics: what the streams, the event log and the bank callbacks are doing.

Counted where the work happens, once per event or per batch (never per subscriber on the
delivery path). With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus-client keeps each
worker's values in files there and ``/metrics`` adds up every worker's (gunicorn's
``child_exit`` hook drops the live gauges of a worker that died).
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

OPEN_STREAMS = Gauge(
    "qrevents_open_streams",
    "Event streams open now, by how the client authenticated",
    ["auth_type"],
    multiprocess_mode="livesum",
)
EVENTS_WRITTEN = Counter(
    "qrevents_events_written",
    "Durable events committed to the event log, by type",
    ["type"],
)
FRAMES_DELIVERED = Counter(
    "qrevents_frames_delivered",
    "Live event frames handed to open streams (one per event per stream)",
)
EVENTS_REPLAYED = Counter(
    "qrevents_events_replayed",
    "Missed events sent from the log to streams that resumed with Last-Event-ID",
)
GAPS_REPAIRED = Counter(
    "qrevents_gaps_repaired",
    "Gaps in an account's live sequence filled from the event log",
)
STREAMS_CLOSED = Counter(
    "qrevents_streams_closed",
    "Event streams ended, by reason (client_disconnected: the client left)",
    ["reason"],
)
BROKER_MESSAGES_DROPPED = Counter(
    "qrevents_broker_messages_dropped",
    "Messages for Redis dropped because this worker's publish queue was full (the other "
    "workers read those events from the event log; revocations are rechecked each second)",
)
BANK_CALLBACKS = Counter(
    "qrevents_bank_callbacks",
    "Bank payment notifications, by outcome (credited, held, duplicate, refused)",
    ["outcome"],
)
BANK_REQUESTS = Counter(
    "qrevents_bank_requests",
    "HTTP requests to the banks, by operation and outcome (ok, rejected, unavailable)",
    ["operation", "outcome"],
)
BANK_LATENCY = Histogram(
    "qrevents_bank_request_seconds",
    "Time the bank took to answer one HTTP request (or to fail), by operation",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0),
)
BANK_PAYMENTS_RECOVERED = Counter(
    "qrevents_bank_payments_recovered",
    "Payments the bank listed that no notification had brought, recorded by reconciliation",
)
BANK_DISAGREEMENTS = Counter(
    "qrevents_bank_disagreements",
    "What the bank says and the ledger holds cannot be reconciled by rule, by kind "
    "(active_with_payment, cancelled_with_payment, unknown_status, payment_unrecorded): "
    "for a person to look at",
    ["kind"],
)
COMMIT_TO_WRITE = Histogram(
    "qrevents_commit_to_write_seconds",
    "From an event reaching this worker's hub (the commit, with the in-process broker) "
    "to its frame being written to a stream",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
WEBHOOK_DELIVERIES = Counter(
    "qrevents_webhook_deliveries",
    "Webhook delivery attempts, by outcome (success, http_error, redirect, timeout, "
    "connection_error, address_refused)",
    ["outcome"],
)
WEBHOOK_LAG = Histogram(
    "qrevents_webhook_delivery_lag_seconds",
    "From an event's commit to a 2xx from a webhook endpoint (retries included)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0, 86400.0),
)
WEBHOOK_ENDPOINTS_DISABLED = Gauge(
    "qrevents_webhook_endpoints_disabled",
    "Webhook endpoints disabled now (by their users, or after 3 days of failures)",
    multiprocess_mode="livemax",
)


def count_written(event_types):
    """Count committed events by type (called once per transaction)."""
    for event_type in event_types:
        EVENTS_WRITTEN.labels(event_type).inc()


def exposition():
    """``(body, content type)``: every metric of this process, or of every worker."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
