"""``GET /health``: liveness, with the database and the broker actually reached, and the
version that answers (which release a host runs, during a rolling upgrade)."""

from flask import Blueprint, current_app

from models import database

from .. import __version__
from ..envelope import failure, success
from ..policy import no_credential, own_connection

bp = Blueprint("health", __name__)


@bp.get("/health")
@own_connection
@no_credential
def health():
    delivery = current_app.extensions["qrevents"]
    checks = {"database": _database_ok(), "broker": delivery.broker.healthy()}
    data = {name: "ok" if ok else "down" for name, ok in checks.items()}
    data["version"] = __version__
    if all(checks.values()):
        return success("Servicio disponible", data)
    return failure("Algún servicio necesario no responde", "unavailable", 503, data=data)


def _database_ok():
    try:
        with database.connection_context():
            database.execute_sql("SELECT 1")
        return True
    except Exception:
        return False
