"""``GET /metrics``: Prometheus' text format, for the deployment's admin key only."""

from flask import Blueprint, current_app

from ..auth import require_admin
from ..metrics import exposition
from ..policy import no_database, unthrottled

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@no_database
@unthrottled
def metrics():
    require_admin()
    body, content_type = exposition()
    return current_app.response_class(body, content_type=content_type)
