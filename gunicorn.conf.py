"""gunicorn settings for long-lived SSE streams on gevent workers.

No application code is imported here: the gevent worker must patch the standard library
before peewee and the app are imported (else every greenlet shares one database connection
state; docs/DEPLOYMENT.md, "gunicorn for long-lived streams"), so ``preload_app`` stays off.
"""

import importlib.util
import logging
import os
import re

from gunicorn.glogging import Logger, SafeAtoms

# Each worker's app checks for this: gunicorn started elsewhere would run without this file
# (the sync worker, no shutdown hooks) and the app refuses to load then (qrevents/serving.py).
os.environ["QREVENTS_GUNICORN_CONFIG"] = os.path.abspath(__file__)

bind = os.environ.get("QREVENTS_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gevent"
# Every open stream holds one of these; leave room for API calls beside them.
worker_connections = int(os.environ.get("QREVENTS_WORKER_CONNECTIONS", "10000"))
preload_app = False
# A liveness check of the event loop, not a request limit (streams never finish).
timeout = 30
# Streams are told to close on shutdown; this only bounds a stuck one.
graceful_timeout = 10
keepalive = 5
# No gunicorn access log: the app writes one JSON line per request (path only, never the query
# string, which may hold a credential; with its request id), and one per stream opened and
# closed. A second line per request was 4 % of a payment's CPU. A flag turns it on anyway
# (accesslog = None cannot stop it): ScrubbingLogger below keeps credentials out of it.
accesslog = None
errorlog = "-"
# Several servers may run side by side (tests, hosts); none needs the control socket.
control_socket_disable = True
loglevel = os.environ.get("QREVENTS_LOG_LEVEL", "info")


def _load_scrubber():
    """``qrevents/scrub.py`` by path: importing it as ``qrevents.scrub`` would import the app
    package, here in the master, before gevent patches the worker (see above)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "qrevents", "scrub.py")
    found = importlib.util.spec_from_file_location("qrevents_log_scrub", path)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


scrub = _load_scrubber()


class _ScrubbedAtoms(SafeAtoms):
    """The access log's atoms, each scrubbed when the format asks for it (only those)."""

    def __getitem__(self, name):
        value = super().__getitem__(name)
        if not isinstance(value, str) or value == "-":  # "-": gunicorn's absent atom
            return value
        if name.startswith("{") and name[-2:] in ("}i", "}o", "}e"):
            return scrub.scrub_header(name[1:-2], value)
        return scrub.scrub_text(value)


class _ScrubMessages(logging.Filter):
    """gunicorn's error log quotes malformed request lines and headers whole."""

    def filter(self, record):
        message = record.getMessage()
        scrubbed = scrub.scrub_message(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub.scrub_message(record.exc_text)
        return True


class ScrubbingLogger(Logger):
    """gunicorn's logger with no credential in any line, whatever --access-logfile,
    --error-logfile or --access-logformat an operator passes (only --logger-class or
    another config file can take it away): the access log's atoms (request line, path,
    query, headers, environ) and the error log's messages and tracebacks are scrubbed."""

    atoms_wrapper_class = _ScrubbedAtoms

    def setup(self, cfg):
        super().setup(cfg)
        # The access log needs no filter: every atom its format reads is scrubbed above.
        if not any(isinstance(f, _ScrubMessages) for f in self.error_log.filters):
            self.error_log.addFilter(_ScrubMessages())


logger_class = ScrubbingLogger

# The stream routes, under any mount point.
_STREAM_PATH = re.compile(r"/(?:api/)?events/stream\Z")


def pre_request(worker, req):
    """Every stream response closes its connection when it ends (``Connection: close``).

    A stream that ended (``stream_closed``) often ended because its worker is draining; a
    client that sent its next request on that keep-alive connection would reach the draining
    worker again. gunicorn drops a Connection header set by the app (WSGI forbids it), so the
    request itself is marked here, before gunicorn writes the response's headers.
    """
    if _STREAM_PATH.search(req.path or ""):
        req.must_close = True


def on_starting(server):
    """Several workers share events only through Redis: refuse to start without it."""
    if server.cfg.workers > 1 and not os.environ.get("QREVENTS_REDIS_URL"):
        raise SystemExit(
            f"qrevents: {server.cfg.workers} workers need QREVENTS_REDIS_URL "
            "(events raised in one worker must reach streams in every other); "
            "set it, or run one worker (WEB_CONCURRENCY=1)"
        )
    _clear_metrics_of_an_earlier_run()


def _clear_metrics_of_an_earlier_run():
    """prometheus-client's multiprocess files must not outlive the deployment that wrote them."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.remove(os.path.join(folder, name))


def child_exit(server, worker):
    """A dead worker's streams are no longer open: drop its live gauges from /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Start delivery and the periodic jobs, and end every stream with ``server_shutdown``
    when the worker stops."""
    import gc

    import gevent
    from gevent import monkey

    from models.db import checkpoint_in_background, database

    # Ten thousand parked streams are a million long-lived objects, and with the default
    # thresholds (700, 10, 10) each full collection walks them all: 11-15 pauses of up to
    # 0.5 s in one benchmark run of a worker (2.2-2.7 s in all). A first generation of
    # 2,000 and full collections a tenth as often: longest pause 15 ms, 0.3 s in all, and
    # CPU per new stream 0.55 -> 0.46 ms at 10,000 streams (same runs, gc.callbacks timed).
    gc.set_threshold(2_000, 10, 100)
    # SQLite's checkpoints (the log copied back and the disk waited for) off the event loop.
    checkpoint_in_background(
        database.obj,
        monkey.get_original("_thread", "start_new_thread"),
        monkey.get_original("time", "sleep"),
    )
    delivery = worker.wsgi.extensions["qrevents"]
    delivery.start()
    scheduler = worker.wsgi.extensions["qrevents.scheduler"]
    scheduler.start()

    def end_streams_on_stop():
        while worker.alive:
            gevent.sleep(0.1)
        scheduler.shutdown()
        delivery.shutdown()

    gevent.spawn(end_streams_on_stop)


def worker_int(worker):
    """Quick stop (SIGINT/SIGQUIT): still tell the streams why they end."""
    delivery = getattr(worker.wsgi, "extensions", {}).get("qrevents")
    if delivery is not None:
        delivery.shutdown()
