"""The simulated bank's payment notifications, sent the way BANECO sends them.

``POST {"payment": PaymentQR}`` to the merchant's URL, repeated up to ``attempts`` times
``interval`` seconds apart until the merchant answers ``responseCode`` 0. Each delivery runs
in its own thread (a greenlet under gevent), so paying answers at once. The fault switches
drop a notification, send it twice, or hold it back until the next one has gone out.
"""

import threading
import time
from collections import deque

import requests
import simplejson

DELIVERY_TIMEOUT = (3.0, 5.0)  # connect, read: one attempt never hangs the notifier


class Notifier:
    """Delivers notifications and remembers each attempt (for tests and the page)."""

    def __init__(self, settings, faults):
        self._settings = settings  # a dict read at each delivery: changes apply at once
        self._faults = faults
        self._held = []  # notifications held back by the out-of-order switch
        self._lock = threading.Lock()
        self.attempts = deque(maxlen=1000)

    def notify(self, account, payment):
        """Send ``payment`` to the merchant (in the background), as the switches say."""
        if not account.get("notify_url"):
            return
        switches = self._faults.notify()
        job = (account["notify_url"], account.get("notify_bearer"), payment)
        if switches.get("drop"):
            self.attempts.append({"qrId": payment["qrId"], "dropped": True})
            return
        copies = 2 if switches.get("twice") else 1
        with self._lock:
            if switches.get("outOfOrder") and not self._held:
                self._held.append(job)
                return
            jobs = [job] * copies + self._held[::-1]
            self._held = []
        threading.Thread(target=self._deliver_in_turn, args=(jobs,), daemon=True).start()

    def release_held(self):
        """Send what the out-of-order switch held back (when the switches are cleared)."""
        with self._lock:
            jobs, self._held = self._held, []
        if jobs:
            threading.Thread(target=self._deliver_in_turn, args=(jobs,), daemon=True).start()

    def discard_held(self):
        """Forget what the out-of-order switch held back (a reset: no test hears another's)."""
        with self._lock:
            self._held = []

    def _deliver_in_turn(self, jobs):
        for url, bearer, payment in jobs:
            self._deliver(url, bearer, payment)

    def _deliver(self, url, bearer, payment):
        """Repeat until the merchant answers ``responseCode`` 0 or the attempts run out."""
        headers = {"Content-Type": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        body = simplejson.dumps({"payment": payment}, use_decimal=True).encode("utf-8")
        attempts = int(self._settings["notifyAttempts"])
        for attempt in range(1, attempts + 1):
            record = {"qrId": payment["qrId"], "transactionId": payment["transactionId"]}
            record["attempt"] = attempt
            try:
                response = requests.post(url, data=body, headers=headers, timeout=DELIVERY_TIMEOUT)
                record["httpStatus"] = response.status_code
                record["responseCode"] = _response_code(response)
            except requests.RequestException as exc:
                record["error"] = type(exc).__name__
            record["delivered"] = record.get("responseCode") == 0
            self.attempts.append(record)
            if record["delivered"]:
                return
            if attempt < attempts:
                time.sleep(float(self._settings["notifyIntervalSeconds"]))


def _response_code(response):
    """The merchant's ``responseCode``, beside the envelope or inside its ``data``."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if "responseCode" in body:
        return body["responseCode"]
    data = body.get("data")
    return data.get("responseCode") if isinstance(data, dict) else None
