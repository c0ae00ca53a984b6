"""RedisBroker: committed events, revocations and stream counts shared by every worker.

Each worker holds one pub/sub connection (never one per stream) and one greenlet reading
it. The worker that commits events hands them to its own hub at once (no round trip
through Redis for its own streams) and to its one publisher greenlet, through a bounded
queue: a slow or frozen Redis holds that greenlet, never the request that made the events.
Their copy from the listener is then a repeat, which the hub drops by sequence number.
Pub/sub is at-most-once, so nothing here is trusted to be complete: the hub fills any gap
in an account's sequence from the event log, and a publish that fails or is dropped (Redis
down or slow, the queue full) reaches the other workers when they reconcile with the log.
A Redis outage therefore delays delivery but never loses or repeats an event.

Keys and channels, under a configurable prefix (``qrevents:`` by default):
``<prefix>events`` and ``<prefix>revocations`` (channels), ``<prefix>workers`` (a set of
worker ids) and ``<prefix>streams:<worker id>`` (a hash account -> open streams, expiring
unless its worker refreshes it, so a dead worker drops out of the counts on its own).
"""

import json
import logging
import os
import secrets
import socket
import time

import gevent
import redis
from gevent.queue import Full, Queue
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from . import metrics
from .events import EventRecord

log = logging.getLogger(__name__)

LISTEN_TIMEOUT = 1.0  # get_message() wait; a None answer is normal
RECONNECT_MIN, RECONNECT_MAX = 0.1, 1.0  # listener backoff after a connection error
COUNTS_INTERVAL = 1.0  # how often a worker publishes its stream counts
COUNTS_TTL_MS = 3500  # a worker silent this long is dead: its counts no longer count
COUNTS_CACHE_SECONDS = 0.25  # other workers' counts change once a second at most
COMMAND_CONNECTIONS = 4  # per worker, for publishes and counts (plus one pub/sub listener)
DROP_WARNING_SECONDS = 10.0  # while messages are dropped, one warning this often at most
# The listener's socket. A network path that drops packets (no RST, no FIN) leaves a pub/sub
# connection open and silent: the health check's PING goes unanswered and nothing fails, for
# the ~15 minutes of the kernel's retransmissions. With TCP_USER_TIMEOUT the kernel closes a
# connection whose sent data stays unacknowledged that long, so the PING sent every
# LISTENER_HEALTH_CHECK seconds surfaces a dead path within about the sum of the two;
# keepalive probes do the same for a connection with nothing to send.
LISTENER_HEALTH_CHECK = 5
LISTENER_KEEPALIVE = {
    socket.TCP_KEEPIDLE: 5,
    socket.TCP_KEEPINTVL: 1,
    socket.TCP_KEEPCNT: 3,
    socket.TCP_USER_TIMEOUT: 5000,  # ms
}


def encode_events_message(account_id, events):
    """The pub/sub message that carries an account's committed events to the other workers.

    Data, not wire bytes: ``{"v": 2, "a": account, "e": [[seq, type, id, data JSON], ...]}``;
    each worker frames the events for its own streams. Workers before version 2 sent
    ``{"a": account, "e": [[seq, SSE frame], ...]}``, which ``decode_events_message`` still
    reads, so old and new workers mixed in a rolling reload keep delivering. (An old worker
    reads a version 2 message as malformed: its streams get those events from the event log
    at its next reconciliation.)
    """
    return json.dumps(
        {
            "v": 2,
            "a": account_id,
            "e": [[e.seq, e.event_type, e.event_id, e.data] for e in events],
        },
        separators=(",", ":"),
    )


def decode_events_message(data):
    """``(account_id, events)`` of an ``encode_events_message`` message (version 2, or an old
    worker's version 1); ValueError, KeyError or TypeError when it is malformed."""
    body = json.loads(data)
    account_id = body["a"]
    version = body["v"] if "v" in body else 1
    if version == 2:
        return account_id, [
            EventRecord(account_id, seq, event_type, event_id, data_json)
            for seq, event_type, event_id, data_json in body["e"]
        ]
    if version == 1:
        return account_id, [_framed_event(account_id, seq, frame) for seq, frame in body["e"]]
    raise ValueError(f"unknown events message version {version!r}")


def _framed_event(account_id, seq, frame):
    """The record of a version 1 message's event, which came as its SSE frame: the frame is
    kept as it came (so its streams get the very same bytes) and parsed for the rest."""
    head, found, data_json = frame.partition("\ndata: ")
    if not found or not data_json.endswith("\n\n"):
        raise ValueError("not an SSE frame")
    fields = dict(line.split(": ", 1) for line in head.split("\n"))
    return EventRecord(
        account_id, seq, fields["event"], fields["id"], data_json[:-2], frame=frame.encode()
    )


class RedisBroker:
    """The broker interface (see ``broker.py``) over Redis, for many workers and hosts.

    ``revoked_keys(key_ids) -> set`` reads which keys are revoked in the database: a
    revocation whose pub/sub message was lost still ends its streams within a second.
    """

    name = "redis"

    def __init__(self, hub, url, *, prefix="qrevents:", revoked_keys=None, publish_queue_size=1000):
        self.hub = hub
        self.prefix = prefix
        self.events_channel = f"{prefix}events".encode()
        self.revocations_channel = f"{prefix}revocations".encode()
        self.workers_key = f"{prefix}workers"
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.counts_key = f"{prefix}streams:{self.worker_id}"
        self.revoked_keys = revoked_keys
        options = {"socket_connect_timeout": 1.0, "socket_keepalive": True}
        # Commands fail fast (one retry: a pooled connection may predate a Redis restart),
        # over a few connections per worker whatever the number of streams.
        self.redis = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                url,
                max_connections=COMMAND_CONNECTIONS,
                timeout=1.0,
                socket_timeout=1.0,
                retry=Retry(NoBackoff(), 1),
                **options,
            )
        )
        # The listener reconnects itself, so that it knows when to catch up.
        self._listener_redis = redis.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=LISTENER_HEALTH_CHECK,
            socket_keepalive_options=LISTENER_KEEPALIVE,
            **options,
        )
        self.listening = False
        self._outbox = Queue(max(1, publish_queue_size))  # (channel, message), for the publisher
        self._dropped = 0  # messages dropped since the last warning
        self._warned_at = float("-inf")
        self._others = {}  # other workers' counts, last read
        self._others_read_at = float("-inf")
        self._greenlets = []

    def start(self):
        """Spawn the listener, the publisher and the counts heartbeat (once per worker)."""
        if not self._greenlets:
            self._greenlets = [
                gevent.spawn(self._listen),
                gevent.spawn(self._publish_outbox),
                gevent.spawn(self._heartbeat),
            ]

    # -- sending ---------------------------------------------------------------------------

    def publish(self, account_id, events):
        """Send committed events to every worker; never waits on Redis nor fails the request
        that made them. This worker's streams get them now."""
        if self.listening:
            self._post(self.events_channel, (account_id, events))
        self.hub.deliver(account_id, events)

    def revoke(self, api_key_id):
        """End the key's streams here at once, and on every other worker through Redis (or
        within a second from the database, should the message not get through)."""
        self.hub.close_key_streams(api_key_id)
        self._post(self.revocations_channel, api_key_id)

    def _post(self, channel, message):
        try:
            self._outbox.put_nowait((channel, message))
        except Full:
            metrics.BROKER_MESSAGES_DROPPED.inc()
            self._dropped += 1
            now = time.monotonic()
            if now - self._warned_at >= DROP_WARNING_SECONDS:
                log.warning(
                    "Redis publish queue is full (%s messages): dropped %s; the other workers "
                    "will read their events from the event log",
                    self._outbox.maxsize,
                    self._dropped,
                )
                self._warned_at, self._dropped = now, 0

    def _publish_outbox(self):
        """The worker's one publisher: messages leave in the order they were posted."""
        while True:
            channel, message = self._outbox.get()
            if channel == self.events_channel:
                message = encode_events_message(*message)
            try:
                self.redis.publish(channel, message)
            except RedisError as exc:
                log.warning("publishing on %s failed: %s", channel.decode(), exc)

    # -- receiving -------------------------------------------------------------------------

    def _listen(self):
        delay = RECONNECT_MIN
        while True:
            pubsub = self._listener_redis.pubsub()
            try:
                self._subscribe(pubsub)
                if not self.listening:
                    log.info("listening to Redis as worker %s", self.worker_id)
                self.listening = True
                delay = RECONNECT_MIN
                # Whatever was announced while we were not listening is in the log.
                self._catch_up()
                while True:
                    message = pubsub.get_message(timeout=LISTEN_TIMEOUT)
                    if message is not None and message["type"] == "message":
                        self._dispatch(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                if self.listening:
                    log.warning("Redis listener lost its connection: %s", exc)
                self.listening = False
            except Exception:
                # Never let the one listener of this worker die: start it over.
                log.exception("Redis listener failed")
                self.listening = False
            finally:
                try:
                    pubsub.close()
                except (RedisError, OSError):
                    pass
            gevent.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def _subscribe(self, pubsub):
        """Subscribe and wait until Redis confirms: only then is nothing missed any more."""
        pubsub.subscribe(self.events_channel, self.revocations_channel)
        pending = {self.events_channel, self.revocations_channel}
        deadline = time.monotonic() + 2 * LISTEN_TIMEOUT
        while pending:
            if time.monotonic() > deadline:
                raise redis.ConnectionError("no confirmation of SUBSCRIBE from Redis")
            message = pubsub.get_message(timeout=LISTEN_TIMEOUT)
            if message is None:
                continue
            if message["type"] == "subscribe":
                pending.discard(message["channel"])
            elif message["type"] == "message":
                self._dispatch(message["channel"], message["data"])

    def _dispatch(self, channel, data):
        try:
            if channel == self.events_channel:
                self.hub.deliver(*decode_events_message(data))
            elif channel == self.revocations_channel:
                self.hub.close_key_streams(int(data))
        except (ValueError, KeyError, TypeError):
            log.error("ignoring a malformed message on %r: %r", channel, data[:200])

    def _catch_up(self):
        try:
            self.hub.reconcile()
        except Exception:
            log.exception("catching up after (re)connecting to Redis failed")

    # -- deployment-wide counts ------------------------------------------------------------

    def _heartbeat(self):
        """Every second: publish this worker's counts, and recheck revoked keys."""
        while True:
            try:
                self._write_counts()
            except RedisError as exc:
                log.debug("publishing stream counts failed: %s", exc)
            self._close_revoked_streams()
            gevent.sleep(COUNTS_INTERVAL)

    def _write_counts(self):
        counts = self.hub.stream_counts()
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.counts_key)
            if counts:
                pipe.hset(self.counts_key, mapping=counts)
                pipe.pexpire(self.counts_key, COUNTS_TTL_MS)
            pipe.sadd(self.workers_key, self.worker_id)
            pipe.pexpire(self.workers_key, COUNTS_TTL_MS)  # gone with the last live worker
            pipe.execute()

    def _read_other_counts(self):
        others = {}
        workers = [w.decode() for w in self.redis.smembers(self.workers_key)]
        workers = [w for w in workers if w != self.worker_id]
        if not workers:
            return others
        with self.redis.pipeline(transaction=False) as pipe:
            for worker in workers:
                pipe.hgetall(f"{self.prefix}streams:{worker}")
            hashes = pipe.execute()
        gone = []
        for worker, counts in zip(workers, hashes, strict=True):
            if not counts:  # expired (dead) or idle; a live worker adds itself again
                gone.append(worker)
            for account_id, count in counts.items():
                account_id = int(account_id)
                others[account_id] = others.get(account_id, 0) + int(count)
        if gone:
            self.redis.srem(self.workers_key, *gone)
        return others

    def stream_counts(self):
        """Open streams per account on every live worker (this one counted live)."""
        now = time.monotonic()
        if now - self._others_read_at > COUNTS_CACHE_SECONDS:
            try:
                self._others = self._read_other_counts()
                self._others_read_at = now
            except RedisError as exc:
                log.warning("reading other workers' stream counts failed: %s", exc)
        counts = dict(self._others)
        for account_id, count in self.hub.stream_counts().items():
            counts[account_id] = counts.get(account_id, 0) + count
        return counts

    def _close_revoked_streams(self):
        """A revocation message may be lost (pub/sub is at-most-once): ask the database."""
        if self.revoked_keys is None:
            return
        key_ids = {
            sub.api_key_id
            for channel in list(self.hub.channels.values())
            for sub in channel.subscribers
            if sub.api_key_id is not None and not sub.closing
        }
        if not key_ids:
            return
        try:
            revoked = self.revoked_keys(key_ids)
        except Exception:
            log.exception("checking revoked keys failed")
            return
        for key_id in revoked:
            self.hub.close_key_streams(key_id)

    def healthy(self):
        """Redis answers and this worker's listener is subscribed."""
        try:
            return self.listening and bool(self.redis.ping())
        except RedisError:
            return False
