"""qrevents: live account events for a QR payment backend, over Server-Sent Events.

Data flow: route -> service (one transaction: change + event log) -> signal after commit
-> broker -> hub (per-account channels) -> stream -> SSE frames.
"""

# The one place the version is written: packaging, /health, the OpenAPI document and
# User-Agent headers read it from here.
__version__ = "0.5.0"

import json
import os
from datetime import timedelta
from decimal import Decimal

from flask import Flask, request
from flask.json.provider import JSONProvider
from flask_jwt_extended import JWTManager
from gevent import monkey
from werkzeug.middleware.proxy_fix import ProxyFix

from models import bind_database, database
from models.peewee_internals import CONNECTION_LOCAL

from . import logs, throttle
from .config import Settings, load_config
from .delivery import Delivery
from .errors import Unavailable, register_error_handlers
from .exact_json import dumps
from .policy import route_policies
from .reconnect import open_request_connection, rerun_on_lost_connection
from .routes import BLUEPRINTS, CONVERTERS
from .scheduler import Scheduler
from .schema import SchemaGate
from .secret_box import WEBHOOK_PURPOSE, SecretBox
from .serving import refuse_unsuitable_server
from .stream_wsgi import StreamEntry

MAX_BODY_BYTES = 64 * 1024


class ExactJSONProvider(JSONProvider):
    """JSON whose amounts are exact two-place numbers (``100.50``), never floats."""

    def dumps(self, obj, **kwargs):
        return dumps(obj)

    def loads(self, s, **kwargs):
        return json.loads(s, parse_float=Decimal)


def create_app(test_config=None):
    """Build the app: settings, database, delivery wiring, blueprints, CLI."""
    instance_path = os.environ.get("QREVENTS_INSTANCE_PATH") or os.path.join(
        os.getcwd(), "instance"
    )
    app = Flask(__name__, instance_path=os.path.abspath(instance_path))
    os.makedirs(app.instance_path, exist_ok=True)
    # test_config: overrides by the variables' names without the prefix, checked as such.
    settings = Settings.from_mapping(
        {**load_config(os.environ, app.instance_path), **(test_config or {})}
    )
    app.config.update(
        QREVENTS=settings,
        JWT_SECRET_KEY=settings.jwt_secret_key,
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=settings.jwt_expires_seconds),
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
    )
    app.json = ExactJSONProvider(app)
    JWTManager(app)

    serving_under_gevent = monkey.is_module_patched("threading")
    refuse_unsuitable_server(serving_under_gevent)
    if serving_under_gevent:
        _require_greenlet_local_connections()
        _make_psycopg2_cooperative()
    bind_database(settings.database_url)
    schema = SchemaGate(app.logger)
    schema.open()
    app.extensions["qrevents.schema"] = schema

    app.extensions["qrevents.secret_box"] = SecretBox(settings.secret_key)
    app.extensions["qrevents.webhook_secret_box"] = SecretBox(
        settings.secret_key, purpose=WEBHOOK_PURPOSE
    )
    delivery = Delivery(app, settings)
    app.extensions["qrevents"] = delivery
    scheduler = Scheduler(app, settings)
    app.extensions["qrevents.scheduler"] = scheduler
    limits = throttle.init_app(app, settings)
    logs.init_app(app)
    register_error_handlers(app)
    app.url_map.converters.update(CONVERTERS)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    policies = route_policies(app)
    for endpoint, view in app.view_functions.items():
        if policies[endpoint].rerun_on_lost_connection:
            app.view_functions[endpoint] = rerun_on_lost_connection(view)
    prepare_request = _register_request_hooks(
        app, policies, limits, delivery, scheduler, schema, start_delivery=serving_under_gevent
    )
    # A GET of the stream skips Flask's dispatch (the hooks' steps and the view's, no more);
    # inside ProxyFix, which must have set the client's address before.
    app.wsgi_app = StreamEntry(app, app.wsgi_app, prepare_request, policies)
    if settings.proxy_hops:
        # The client's address (limits, logs) as the trusted proxies saw it.
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)

    from .cli import register_commands

    register_commands(app)
    return app


def _require_greenlet_local_connections():
    """Peewee imported before gevent patched threading would share one connection state
    between all greenlets of a worker (docs/DEPLOYMENT.md): refuse to start instead."""
    import gevent.local

    if not issubclass(CONNECTION_LOCAL, gevent.local.local):
        raise RuntimeError(
            "peewee was imported before gevent monkey-patching: keep preload_app off and "
            "import no app code in gunicorn.conf.py"
        )


def _make_psycopg2_cooperative():
    """psycopg2 is C and ignores monkey-patching (docs/DEPLOYMENT.md, PostgreSQL): without
    this wait callback, a query waiting on PostgreSQL (a row lock, a slow plan) freezes every
    stream of the worker. Set before the first connection is opened, in the worker process."""
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()


def _register_request_hooks(app, policies, limits, delivery, scheduler, schema, *, start_delivery):
    """One hook before every view, its steps in this order, each as the view's policy says
    (``qrevents.policy``): the request id; the abuse limits, before any other work; the
    worker's delivery, started by its first request; the verified schema (none for views
    served while the database is away: a worker booted while it was away); one connection
    for the request, except for views that scope their own (the stream, and the views that
    wait for the bank: no connection may be held while it answers).

    Returns those steps as ``prepare_request(policy)``: the stream's own WSGI entry
    (``qrevents.stream_wsgi``) runs them too."""

    def prepare_request(policy):
        """The answer instead of the view's (a refusal), or None to run the view."""
        logs.start_request()
        limits.check_request(policy)
        if start_delivery and not delivery.started:
            delivery.start()
            scheduler.start()
        if not policy.needs_database:
            return None
        try:
            schema.require()
        except Unavailable:
            if policy.when_database_away is not None:
                return policy.when_database_away()
            raise
        if policy.request_connection:
            open_request_connection()
        return None

    @app.before_request
    def prepare_view():
        return prepare_request(policies[request.endpoint])

    @app.teardown_request
    def close_connection(exc):
        if not database.is_closed():
            database.close()

    return prepare_request
