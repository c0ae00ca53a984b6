"""A legacy Flask app that already signs its users in, showing their payments live from
qrevents and receiving the account's webhooks. Plain Flask: ``flask run`` (threaded), no
gevent. docs/INTEGRATION.md walks through it.

Settings (environment):
    QREVENTS_URL              qrevents as the browser reaches it, e.g. http://127.0.0.1:8000
    QREVENTS_ACCOUNT_ID       the qrevents account of this shop
    HOST_JWT_SECRET           shared with qrevents' QREVENTS_HOST_JWT_KEY (HS256)
    HOST_JWT_ISSUER           = qrevents' QREVENTS_HOST_JWT_ISSUER (this app's URL, say)
    HOST_JWT_AUDIENCE         = qrevents' QREVENTS_HOST_JWT_AUDIENCE
    QREVENTS_WEBHOOK_SECRET   the whsec_... secret POST /webhooks answered once
    SECRET_KEY                this app's own session key
"""

import json
import logging
import os
import threading

from flask import Flask, abort, jsonify, redirect, render_template, request, session, url_for
from qrevents_client import WebhookSignatureError, host_token, verify_webhook

# The demo's one user. A real app checks its own user table (and hashes passwords).
DEMO_USER = {"email": "cajero@example.com", "password": "demo", "name": "Cajero"}
STREAM_TOKEN_SECONDS = 300  # short: the page asks for a new one when the stream ends

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
settings = {
    name: os.environ[name]
    for name in (
        "QREVENTS_URL",
        "QREVENTS_ACCOUNT_ID",
        "HOST_JWT_SECRET",
        "HOST_JWT_ISSUER",
        "HOST_JWT_AUDIENCE",
        "QREVENTS_WEBHOOK_SECRET",
    )
}
log = logging.getLogger("legacy_flask")
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

# Webhooks come at least once: remember the ids already handled (a real app: a unique
# column in its database, written in the same transaction as what the event changes).
handled_ids = set()
handled_lock = threading.Lock()


@app.get("/login")
def login_form():
    return render_template("login.html", error=None)


@app.post("/login")
def login():
    email, password = request.form.get("email", ""), request.form.get("password", "")
    if email != DEMO_USER["email"] or password != DEMO_USER["password"]:
        return render_template("login.html", error="Email o contraseña incorrectos"), 401
    session["user"] = email
    return redirect(url_for("payments_page"))


@app.get("/")
def payments_page():
    if "user" not in session:
        return redirect(url_for("login_form"))
    return render_template("payments.html", user=DEMO_USER["name"])


@app.get("/stream-token")
def stream_token():
    """A short qrevents token for the signed-in user's shop; the browser opens the stream
    with it. No qrevents user or API key exists for this person."""
    if "user" not in session:
        abort(401)
    token = host_token(
        settings["HOST_JWT_SECRET"],
        account_id=int(settings["QREVENTS_ACCOUNT_ID"]),
        issuer=settings["HOST_JWT_ISSUER"],
        audience=settings["HOST_JWT_AUDIENCE"],
        subject=session["user"],
        lifetime=STREAM_TOKEN_SECONDS,
    )
    return jsonify(streamUrl=settings["QREVENTS_URL"] + "/events/stream", token=token)


@app.post("/webhooks/qrevents")
def qrevents_webhook():
    """qrevents POSTs each durable event here, signed; anything unsigned is refused."""
    try:
        event = verify_webhook(
            request.get_data(),
            request.headers.get("X-QrEvents-Signature"),
            settings["QREVENTS_WEBHOOK_SECRET"],
        )
    except WebhookSignatureError as refused:
        log.warning("webhook refused: %s", refused)
        return jsonify(ok=False), 400
    with handled_lock:
        seen = event["id"] in handled_ids
        handled_ids.add(event["id"])
    if not seen:
        # Here a real app records the payment in its own books.
        log.info("webhook verified: %s", json.dumps({"id": event["id"], "type": event["type"]}))
    return jsonify(ok=True)
