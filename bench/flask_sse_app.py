"""The peer: flask-sse (PyPI) as a Flask user would deploy it, on gunicorn gevent workers.

``GET /stream?channel=C`` is flask-sse's own view; ``POST /publish`` takes
``{"channel", "type", "data"}`` and calls ``sse.publish``, as an app's route would.
Run: ``BENCH_SSE_REDIS_URL=redis://127.0.0.1:6379/9 gunicorn -k gevent bench.flask_sse_app:app``.
"""

import os

from flask import Flask, jsonify, request
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ.get("BENCH_SSE_REDIS_URL", "redis://127.0.0.1:6379/9")
app.register_blueprint(sse, url_prefix="/stream")


@app.post("/publish")
def publish():
    body = request.get_json()
    sse.publish(body["data"], type=body["type"], channel=body["channel"])
    return jsonify(ok=True)
