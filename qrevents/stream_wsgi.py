"""The stream's own WSGI entry: a GET of ``/events/stream`` (or ``/api/events/stream``)
answered without Flask's dispatch around its handshake.

Opening streams is most of what a worker's requests are, and Flask's dispatch of one (a
response object, the after-request processing, its headers rebuilt for WSGI, the signals)
cost a sixth of a new stream's CPU. This entry sits in front of Flask's ``wsgi_app`` and
takes only a GET of the stream's paths (read off Flask's URL map). In Flask's own request
context (``request``, ``g`` and ``current_app`` mean what they mean in a view), it runs the
very steps Flask would: the before-request hook's (``prepare_request``), the view's
(``routes.events.stream_answer``) and the after-request hook's (``logs.finish_request``).
An accepted stream's status and headers go straight to ``start_response``; every other
answer (a refusal, a credential failure, an error) becomes a response through Flask's own
error handlers and after-request hooks, as the view's would.

What it leaves out for an accepted stream: Flask's ``request_started`` and
``request_finished`` signals (nothing here listens to them) and the session (never used).
It refuses to be built beside request hooks it would skip (``_check_hooks``).
"""

from .logs import finish_request
from .routes.events import SSE_CONTENT_TYPE, stream_answer, stream_response
from .stream import EventStream

STREAM_ENDPOINT = "events.stream"
# The hooks whose steps this entry runs itself, by name: another hook would be skipped.
KNOWN_HOOKS = {"before": {"prepare_view"}, "after": {"log_request"}}


class StreamEntry:
    """WSGI middleware: the stream's GETs answered here, everything else by ``flask_wsgi_app``."""

    def __init__(self, app, flask_wsgi_app, prepare_request, policies):
        _check_hooks(app)
        self.app = app
        self.flask_wsgi_app = flask_wsgi_app
        self.prepare_request = prepare_request  # the before-request hook's steps
        self.policy = policies[STREAM_ENDPOINT]
        self.paths = frozenset(rule.rule for rule in app.url_map.iter_rules(STREAM_ENDPOINT))

    def __call__(self, environ, start_response):
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("PATH_INFO") not in self.paths
            # The test client keeping the contexts for a test to read after the request.
            or "werkzeug.debug.preserve_context" in environ
        ):
            return self.flask_wsgi_app(environ, start_response)
        # From here, as ``Flask.wsgi_app`` does.
        app = self.app
        ctx = app.request_context(environ)
        error = None
        try:
            try:
                ctx.push()
                response = self._dispatch()
            except Exception as e:
                error = e
                response = app.handle_exception(e)
            except BaseException as e:  # as Flask: the context is popped with it, then it goes on
                error = e
                raise
            return response(environ, start_response)
        finally:
            if error is not None and app.should_ignore_error(error):
                error = None
            ctx.pop(error)

    def _dispatch(self):
        """``Flask.full_dispatch_request`` for this one view: a WSGI response."""
        app = self.app
        try:
            rv = self.prepare_request(self.policy)
            if rv is None:
                body, headers = stream_answer()
                if isinstance(body, EventStream):
                    headers = [*headers.items(), ("Content-Type", SSE_CONTENT_TYPE)]
                    request_id = finish_request(200)
                    if request_id is not None:
                        headers.append(("X-Request-ID", request_id))
                    return AcceptedStream(body, headers)
                rv = stream_response(body, headers)
        except Exception as e:
            rv = app.handle_user_exception(e)
        return app.finalize_request(rv)


class AcceptedStream:
    """An accepted stream's answer, as a WSGI app: ``200 OK``, its headers, its body."""

    __slots__ = ("body", "headers")

    def __init__(self, body, headers):
        self.body = body
        self.headers = headers

    def __call__(self, environ, start_response):
        start_response("200 OK", self.headers)
        return self.body


def _check_hooks(app):
    """Refuse to start beside a request hook of the app or of the stream's blueprint that
    ``StreamEntry`` would skip for an accepted stream (teardowns run: the context's pop)."""
    blueprint = STREAM_ENDPOINT.partition(".")[0]
    found = {
        "before": app.before_request_funcs,
        "after": app.after_request_funcs,
        "url_value_preprocessor": app.url_value_preprocessors,
    }
    for kind, hooks in found.items():
        for scope in (None, blueprint):
            unknown = {f.__name__ for f in hooks.get(scope, ())} - KNOWN_HOOKS.get(kind, set())
            if unknown:
                raise RuntimeError(
                    f"qrevents.stream_wsgi answers the stream without the {kind}-request "
                    f"hook(s) {sorted(unknown)}: run their steps there too, then name them in "
                    "KNOWN_HOOKS"
                )
