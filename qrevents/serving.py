"""Which server runs the app: refuse, at start and in one line, those that cannot serve streams.

Streams park a greenlet each on gunicorn's gevent worker. Werkzeug's threaded development
server (``flask run``) shares the hub's gevent objects and the SQLite connection between
threads; gunicorn's sync worker (what gunicorn runs when it does not find ``gunicorn.conf.py``
in the folder it was started from, ``--chdir`` notwithstanding) serves one request at a time,
so one open stream blocks the server. Commands and tests that build the app in-process are
not serving and pass.
"""

import os
import sys

import click

START_WITH = "start it from the project folder with `gunicorn app:app` (or `make run`)"


def refuse_unsuitable_server():
    """Raise with one line saying how to start, when a server other than the gevent worker
    is about to serve the app. Call it only when gevent has not patched the process."""
    if "gunicorn.workers.base" in sys.modules:
        from gunicorn.errors import AppImportError

        # gunicorn prints this error's text alone and stops the master (App failed to load).
        raise AppImportError(_without_gevent_worker())
    context = click.get_current_context(silent=True)
    if context is not None and context.command.name == "run":
        raise SystemExit(
            "qrevents: `flask run` (Werkzeug's threaded server) cannot serve event streams; "
            + START_WITH
        )


def _without_gevent_worker():
    # gunicorn has moved to its --chdir folder by now: the project's, if it holds the config.
    config = os.path.join(os.getcwd(), "gunicorn.conf.py")
    how = (
        f"start it with `gunicorn -c {config} --chdir {os.getcwd()} app:app`"
        if os.path.exists(config)
        else START_WITH
    )
    return (
        "qrevents: gunicorn is not running the gevent worker of gunicorn.conf.py (it reads "
        f"that file from the folder it starts in; another worker blocks on one stream); {how}"
    )
