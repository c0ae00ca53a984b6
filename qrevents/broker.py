"""Brokers carry committed events and revocations to every worker's hub, and hold the
per-account stream limit.

``LocalBroker`` is the embedded default (one worker, nothing to cross). A Redis broker
implements the same methods for many workers and hosts.
"""


class StreamSlot:
    """One stream's place under its account's limit; ``release`` frees it (once)."""

    __slots__ = ("account_id", "lease_id", "_free")

    def __init__(self, account_id, lease_id, free):
        self.account_id = account_id
        self.lease_id = lease_id
        self._free = free

    def release(self):
        free, self._free = self._free, None
        if free is not None:
            free(self)


class LocalBroker:
    """One process: the broker is a direct call into this worker's hub."""

    name = "in-process"

    def __init__(self, hub):
        self.hub = hub
        self._held = {}  # account_id -> slots taken and not released

    def start(self):
        """Nothing to listen to: every event is raised in this process."""

    def publish(self, account_id, events):
        self.hub.deliver(account_id, events)

    def revoke(self, api_key_id):
        self.hub.close_key_streams(api_key_id)

    def watch(self, account_id):
        """Every account's events are raised in this process: nothing to listen to."""

    def unwatch(self, account_id):
        """See ``watch``."""

    def take_stream_slot(self, account_id, limit):
        """A ``StreamSlot`` if the account has fewer than ``limit`` streams, else None.
        Exact: handshakes in flight count too."""
        held = self._held.get(account_id, 0)
        if held >= limit:
            return None
        self._held[account_id] = held + 1
        return StreamSlot(account_id, None, self._free)

    def _free(self, slot):
        held = self._held.pop(slot.account_id, 0) - 1
        if held > 0:
            self._held[slot.account_id] = held

    def stream_counts(self):
        """Open streams per account across the deployment (here: this worker)."""
        return self.hub.stream_counts()

    def reconcile(self):
        """Events written by another process (a CLI command) reach the streams from the log."""
        self.hub.reconcile()

    def healthy(self):
        return True
