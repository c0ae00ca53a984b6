"""Brokers carry committed events and revocations to every worker's hub.

``LocalBroker`` is the embedded default (one worker, nothing to cross). A Redis broker
implements the same five methods for many workers and hosts.
"""


class LocalBroker:
    """One process: the broker is a direct call into this worker's hub."""

    name = "in-process"

    def __init__(self, hub):
        self.hub = hub

    def start(self):
        """Nothing to listen to: every event is raised in this process."""

    def publish(self, account_id, events):
        self.hub.deliver(account_id, events)

    def revoke(self, api_key_id):
        self.hub.close_key_streams(api_key_id)

    def stream_counts(self):
        """Open streams per account across the deployment (here: this worker)."""
        return self.hub.stream_counts()

    def healthy(self):
        return True
