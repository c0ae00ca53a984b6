"""The live dashboard: one HTML page whose scripts and styles are plain files under
``qrevents/static`` (served by Flask's own ``static`` endpoint, no build step)."""

import os

from flask import Blueprint, current_app, send_from_directory

from ..policy import no_credential, no_database

bp = Blueprint("dashboard", __name__)

# The page holds a credential in sessionStorage: allow scripts from this origin only, and
# never submit a form natively (if the script failed, a password would end up in a URL).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@bp.get("/dashboard")
@no_database
@no_credential
def page():
    folder = os.path.join(current_app.static_folder, "dashboard")
    response = send_from_directory(folder, "index.html", max_age=0)
    response.headers.update(PAGE_HEADERS)
    return response
