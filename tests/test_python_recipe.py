"""The httpx-sse recipe of docs/DEPLOYMENT.md, run as written, through every kind of restart
behind nginx: every durable event once, in order, and still following at the end."""

import re
import threading
import time

import pytest

from tests.live import ROOT, Api
from tests.test_multiworker import wait_for
from tests.test_nginx import nginx_binary
from tests.test_real_clients import RESTARTS, Deployment, Publisher, logged_ids

DOC = ROOT / "docs" / "DEPLOYMENT.md"


def recipe():
    """The namespace of the doc's Python block under "A Python client that survives restarts"."""
    text = DOC.read_text()
    section = text[text.index("## A Python client that survives restarts") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


class Done(Exception):
    """Raised by the test's handler to end ``follow``."""


def test_the_documented_httpx_sse_loop_survives_every_restart(tmp_path):
    pytest.importorskip("httpx_sse")
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    follow = recipe()["follow"]
    deployment = Deployment(tmp_path, through_nginx=True)
    api = Api(deployment.server.base)
    received, kinds, stop = [], [], threading.Event()

    def handle(event):
        if stop.is_set():
            raise Done
        kinds.append(event.event)
        if event.event == "qr_created":
            received.append(event.id)

    def run():
        try:
            follow(deployment.base, tenant.api_key, handle)
        except Done:
            pass

    try:
        tenant = api.new_tenant()
        follower = threading.Thread(target=run, daemon=True)
        follower.start()
        assert wait_for(lambda: "connection" in kinds, timeout=10)
        for restart in RESTARTS:
            api.create_qr(tenant)
            api.session.close()
            publisher = Publisher(deployment.server.base, tenant)
            publisher.start()
            time.sleep(0.3)
            deployment.restart(restart)
            time.sleep(0.3)
            publisher.stop()
            api.create_qr(tenant)
            api.session.close()
            expected = logged_ids(deployment, tenant.account_id)
            assert wait_for(lambda e=expected: received[-1:] == e[-1:], timeout=20), restart
            time.sleep(0.3)
            print(
                f"\nhttpx-sse recipe, nginx, {restart}: expected {len(expected)} in all, "
                f"received {len(received)}, duplicated {len(received) - len(set(received))}"
            )
            assert received == expected, restart
        assert follower.is_alive()
        assert kinds.count("stream_closed") >= 2  # SIGHUP and SIGTERM ended streams cleanly
    finally:
        stop.set()
        deployment.stop()
