"""What the request pipeline does around a view, declared on the view by a decorator and read
by the one ``before_request`` hook (``qrevents.create_app``): which connection it runs in,
whether it needs the database, and which abuse limits count it.

A view with no decorator gets ``DEFAULT``: a connection for the request, run again once if
PostgreSQL ends it before commit, counted against its credential's rate.
"""

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Policy:
    request_connection: bool = True  # the hook opens one connection for the whole request
    rerun_on_lost_connection: bool = True  # see ``reconnect.rerun_on_lost_connection``
    needs_database: bool = True  # else served while the database is away
    throttled: bool = True  # counted against its credential's API rate
    takes_credential: bool = True  # refused while its address is out of authentication tries
    # Open to a host application's token although it writes (a host token otherwise reads).
    host_token_writes: bool = False
    # The answer while the schema is not verified, instead of a 503 (the stream's own refusal).
    when_database_away: object = None


DEFAULT = Policy()

# A request that matched no route (a 404 or 405 follows): nothing to open, nothing to count.
NO_ROUTE = Policy(
    request_connection=False,
    rerun_on_lost_connection=False,
    needs_database=False,
    throttled=False,
    takes_credential=False,
)

# Flask's own ``static`` endpoint (the dashboard's files), which no decorator of ours reaches.
STATIC_FILES = NO_ROUTE


def _declaring(**changes):
    def decorate(view):
        view.route_policy = replace(policy_of(view), **changes)
        return view

    return decorate


def policy_of(view):
    return getattr(view, "route_policy", DEFAULT)


# Scopes its own connections (none held while it waits), and reruns them itself.
own_connection = _declaring(request_connection=False, rerun_on_lost_connection=False)

# Waits for the bank: holds no connection meanwhile (its short ones are ``in_connection``).
bank_bound = _declaring(request_connection=False)

# Served while the database is away (an answer that needs none).
no_database = _declaring(
    needs_database=False, request_connection=False, rerun_on_lost_connection=False
)

# Not counted against the API rate (it has a limit of its own, or none is wanted).
unthrottled = _declaring(throttled=False)

# Takes no credential (or only the bank's): the failure limit per address and the API rate,
# which is counted per credential, spare it.
no_credential = _declaring(takes_credential=False, throttled=False)


# A write a host application's token may make (asking for a stream ticket).
host_token_writes = _declaring(host_token_writes=True)


def when_database_away(answer):
    """Answer ``answer()`` instead of a 503 while the schema is not verified."""
    return _declaring(when_database_away=answer)


def route_policies(app):
    """Every endpoint's policy, looked up once per request by endpoint name."""
    policies = {endpoint: policy_of(view) for endpoint, view in app.view_functions.items()}
    if "static" in policies:
        policies["static"] = STATIC_FILES
    policies[None] = NO_ROUTE
    return policies
