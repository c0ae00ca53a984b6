"""PreparedQuery: SQL built once, run with each call's parameters, never other ones."""

import pytest

from models import Account, PreparedQuery
from qrevents.services.accounts import create_account


def test_one_build_serves_every_later_call_with_its_own_parameters(app):
    builds = []

    def build(name):
        builds.append(name)
        return Account.select(Account.id).where(Account.name == name)

    by_name = PreparedQuery(build)
    first, second = create_account("Uno", "BOB"), create_account("Dos", "BOB")
    assert by_name.rows("Uno") == [(first.id,)]
    assert by_name.rows("Dos") == [(second.id,)]
    assert by_name.rows("Tres") == []
    assert builds == ["Uno"]


def test_a_query_with_parameters_of_its_own_is_refused(app):
    first_only = PreparedQuery(lambda name: Account.select().where(Account.name == name).limit(1))
    with pytest.raises(ValueError, match="prepared query"):
        first_only.rows("Uno")
