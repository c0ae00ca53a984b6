"""Structured logs: one JSON line per request and per stream lifecycle event.

Every line carries the request id (the client's ``X-Request-ID`` when it is a plain token,
else a new one; echoed in the response). Only the path is logged, never the query string,
headers or body: those may hold a credential; and a credential put in the path is scrubbed.
"""

import json
import logging
import os
import re
import sys
import time
import uuid

from flask import g, request

from .clock import iso, utcnow
from .scrub import scrub_text

log = logging.getLogger("qrevents.events")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")


def log_event(event, level=logging.INFO, **fields):
    """One JSON line: ``{"ts", "event", "pid", ...fields}`` (pid: which worker).

    The record is handed to the logger's handlers without ``Logger.log``'s search of the
    call stack for a file and line no line of ours prints: with the JSON encoding, that was
    a tenth of opening a stream (two lines each).
    """
    if not log.isEnabledFor(level):
        return
    line = {"ts": iso(utcnow()), "event": event, "pid": os.getpid(), **fields}
    try:
        text = json.dumps(line)
    except TypeError:  # a value JSON has no type for (an id object, a Decimal): its str
        text = json.dumps(line, default=str)
    log.handle(log.makeRecord(log.name, level, __file__, 0, text, None, None))


class JsonLineHandler(logging.StreamHandler):
    """Each record's message on a line of its own: what its ``%(message)s`` formatter makes
    of ``log_event``'s records (no exception, no stack), written without the formatter's
    steps and without taking the handler's lock a second time to flush (``handle`` holds
    it). The two lines of a stream's opening cost about a tenth less with it."""

    def emit(self, record):
        if record.exc_info or record.stack_info or record.args:
            super().emit(record)
            return
        try:
            self.stream.write(f"{record.msg}{self.terminator}")
            self.stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def start_request():
    """The request's id and start time; the request hook calls it first of all, so that a
    request refused by a later step is logged too."""
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    g.request_started = time.monotonic()


def init_app(app):
    """Send the JSON lines to stderr (gunicorn's log) and log every finished request."""
    # A log record asks for the current thread's name by default; under gevent that makes a
    # dummy Thread for every greenlet that logs (a tenth of opening a stream, and memory
    # kept for as long as the stream lives). No line of ours or gunicorn's prints it (the
    # process id, which gunicorn's lines do print, stays).
    logging.logThreads = False
    if not log.handlers:
        handler = JsonLineHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    @app.after_request
    def log_request(response):
        request_id = finish_request(response.status_code)
        if request_id is not None:
            response.headers["X-Request-ID"] = request_id
        return response


def finish_request(status):
    """Log the request as answered with ``status``: its id, to echo in ``X-Request-ID``, or
    None for a failure before ``start_request`` ran (nothing to log). Every request's last
    step, after Flask's views and the stream's own entry (``qrevents.stream_wsgi``) alike."""
    request_id = g.get("request_id")
    if request_id is None:
        return None
    log_event(
        "request",
        requestId=request_id,
        method=request.method,
        path=scrub_text(request.path),
        status=status,
        durationMs=round((time.monotonic() - g.request_started) * 1000, 1),
        remoteAddr=request.remote_addr,
    )
    return request_id
