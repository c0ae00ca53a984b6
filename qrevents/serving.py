"""Which server runs the app: refuse, at start and in one line, those that cannot serve streams.

Streams park a greenlet each on gunicorn's gevent worker, set up by ``gunicorn.conf.py``.
Werkzeug's threaded development server (``flask run``) shares the hub's gevent objects and the
SQLite connection between threads. gunicorn reads ``gunicorn.conf.py`` only from the folder it
was started in (``--chdir`` notwithstanding); without it, it runs the sync worker, where one
open stream blocks the server, and even with ``-k gevent`` it would lack the shutdown hooks and
the refusal of several workers without Redis. Commands and tests that build the app
in-process are not serving and pass.
"""

import os
import sys

import click

START_WITH = "start it from the project folder with `gunicorn app:app` (or `make run`)"
# Set by gunicorn.conf.py in the master; its workers inherit it.
CONFIG_LOADED = "QREVENTS_GUNICORN_CONFIG"


def refuse_unsuitable_server(gevent_patched):
    """Raise with one line saying how to start, when a server other than gunicorn's gevent
    worker configured by ``gunicorn.conf.py`` is about to serve the app."""
    if "gunicorn.workers.base" in sys.modules:
        if gevent_patched and os.environ.get(CONFIG_LOADED):
            return
        from gunicorn.errors import AppImportError

        # gunicorn prints this error's text alone and stops the master (App failed to load).
        raise AppImportError(_without_config())
    context = click.get_current_context(silent=True)
    if not gevent_patched and context is not None and context.command.name == "run":
        raise SystemExit(
            "qrevents: `flask run` (Werkzeug's threaded server) cannot serve event streams; "
            + START_WITH
        )


def _without_config():
    # gunicorn has moved to its --chdir folder by now: the project's, if it holds the config.
    config = os.path.join(os.getcwd(), "gunicorn.conf.py")
    how = (
        f"start it with `gunicorn -c {config} --chdir {os.getcwd()} app:app`"
        if os.path.exists(config)
        else START_WITH
    )
    return (
        "qrevents: gunicorn runs without gunicorn.conf.py's gevent worker (it reads that file "
        f"from the folder it starts in only; a sync worker blocks on one open stream); {how}"
    )
