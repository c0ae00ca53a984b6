"""Each view's request policy (``qrevents.policy``) as its decorators declare it: the views
listed here and no others differ from the default."""

from qrevents.policy import DEFAULT, NO_ROUTE, route_policies

# endpoint: (request connection, rerun on lost connection, needs database, throttled,
# takes credential, a host application's token may write)
EXPECTED = {
    "events.stream": (False, False, True, False, True, False),
    "health.health": (False, False, True, False, False, False),
    "dashboard.page": (False, False, False, False, False, False),
    "static": (False, False, False, False, False, False),
    "metrics.metrics": (False, False, False, False, True, False),
    "openapi.openapi": (False, False, False, False, False, False),
    "qr.create_qr": (False, True, True, True, True, False),
    "qr.cancel_qr": (False, True, True, True, True, False),
    "bank.notify_payment": (True, True, True, False, False, False),
    "bank.sync_qr_status": (True, True, True, False, False, False),
    "auth.log_in": (True, True, True, False, False, False),
    "events.ticket": (True, True, True, True, True, True),
}


def flags(policy):
    return (
        policy.request_connection,
        policy.rerun_on_lost_connection,
        policy.needs_database,
        policy.throttled,
        policy.takes_credential,
        policy.host_token_writes,
    )


def test_only_the_listed_views_leave_the_default_policy(app):
    policies = route_policies(app)
    declared = {
        endpoint: flags(policy)
        for endpoint, policy in policies.items()
        if endpoint is not None and policy != DEFAULT
    }
    assert declared == EXPECTED


def test_the_stream_answers_for_itself_while_the_database_is_away(app):
    policies = route_policies(app)
    assert policies["events.stream"].when_database_away is not None
    others = [e for e, p in policies.items() if e != "events.stream" and p.when_database_away]
    assert others == []


def test_a_request_without_a_route_opens_and_counts_nothing(app):
    assert route_policies(app)[None] == NO_ROUTE
    assert flags(NO_ROUTE) == (False, False, False, False, False, False)
