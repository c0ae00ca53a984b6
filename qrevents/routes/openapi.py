"""``GET /openapi.json``: the API description, for people and for the fuzzer."""

import json
from functools import cache

from flask import Blueprint, current_app

from ..openapi import build_spec
from ..policy import no_credential, no_database

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
@no_database
@no_credential
def openapi():
    return current_app.response_class(_document(), mimetype="application/json")


@cache
def _document():
    return json.dumps(build_spec())
