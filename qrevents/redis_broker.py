"""RedisBroker: committed events, revocations and stream limits shared by every worker.

No broadcast: each account has its own channel, and a worker subscribes to the channels of
the accounts it serves (its open streams, the webhook endpoints it holds), so it receives
from Redis only what it delivers. Each worker holds one pub/sub connection per Redis node
(never one per stream) and one greenlet reading it; another sends its SUBSCRIBE and
UNSUBSCRIBE commands as streams come and go. With ``cluster`` the same runs on Redis
Cluster's sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``), one connection per primary.

The worker that commits events hands them to its own hub at once and to its one publisher
greenlet through a bounded queue: a slow or frozen Redis holds that greenlet, never the
request that made the events. The publisher runs one script per message: it raises the
account's watermark (the highest sequence number published) and publishes, atomically.
Nothing is missed, without a database read per account every second:

- a new subscription: once Redis confirms it, every later publish arrives; whatever was
  published before is under the watermark, read then (the hub fills the gap from the log);
- a publish that failed or was dropped (Redis down or slow, the queue full): the publisher
  owes the account a notice ("its log reaches seq N") and sends it when Redis answers;
- a listener that lost its connection, a worker that died between commit and publish, and
  old workers (the single ``<prefix>events`` channel) during a rolling upgrade: the hub
  reconciles every served account with the log (at reconnection; once when a worker
  disappears; every round while old workers listen; and every ``FULL_RECONCILE_ROUNDS``
  rounds whatever happens).

Keys and channels, under a configurable prefix (``qrevents:`` by default), ``{id}`` being an
account id (a hash tag: an account's keys and channel share a cluster slot):
``<prefix>events:{id}`` (the account's channel), ``<prefix>seq:{id}`` (its watermark),
``<prefix>slots:{id}`` (its streams' leases: a sorted set of lease ids scored by expiry),
``<prefix>revocations`` (channel), ``<prefix>workers`` (a set of worker ids),
``<prefix>alive:<worker id>`` and ``<prefix>streams:<worker id>`` (a hash account -> open
streams), both expiring unless their worker refreshes them every second.
"""

import itertools
import json
import logging
import os
import secrets
import socket
import time

import gevent
import redis
from gevent.event import Event as Signal
from gevent.queue import Empty, Full, Queue
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from . import metrics
from .broker import StreamSlot
from .events import EventRecord

log = logging.getLogger(__name__)

LISTEN_TIMEOUT = 1.0  # get_message() wait; a None answer is normal
PING_SECONDS = 5.0  # an idle listener pings this often...
HUNG_SECONDS = 12.0  # ...and reconnects after this long without a word (a silent partition)
RECONNECT_MIN, RECONNECT_MAX = 0.1, 1.0  # listener backoff after a connection error
COUNTS_INTERVAL = 1.0  # how often a worker publishes its stream counts and renews its leases
COUNTS_TTL_MS = 3500  # a worker silent this long is dead: its counts and leases no longer count
COUNTS_CACHE_SECONDS = 0.25  # other workers' counts change once a second at most
COMMAND_CONNECTIONS = 4  # per worker and node, for publishes and counts (plus the listeners)
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
WATERMARK_TTL_SECONDS = 3600  # a watermark matters for seconds; an idle account's goes
OWED_RETRY_SECONDS = 0.5  # how often a publisher that owes notices tries Redis again
FULL_RECONCILE_ROUNDS = 30  # whatever happens, a full reconciliation this often (rounds)
SUBSCRIBE_BATCH = 500  # channels per SUBSCRIBE command
NOTICE = b"\x00seq "  # a message "<NOTICE><seq>": the account's log reaches seq (no JSON starts so)

# KEYS[1] the watermark; ARGV: seq, ttl, PUBLISH or SPUBLISH, channel, message. Raised before
# the publish, in one script: a subscriber confirmed after it reads the watermark, one
# confirmed before it receives the message.
PUBLISH_SCRIPT = """
local seq = tonumber(ARGV[1])
if seq > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], seq, 'EX', ARGV[2])
end
return redis.call(ARGV[3], ARGV[4], ARGV[5])
"""
_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
# KEYS[1] the account's leases; ARGV: limit, ttl ms, lease id. 1 if taken. Redis's clock,
# not the workers': the hosts' clocks may differ.
TAKE_SLOT_SCRIPT = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)
# KEYS[1] the account's leases; ARGV: ttl ms, lease ids (added back if Redis lost them).
RENEW_SLOTS_SCRIPT = (
    _NOW_MS
    + """
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""
)


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
    """``(account_id, events)`` of an ``encode_events_message`` message; ValueError, KeyError
    or TypeError when it is malformed. Only version 2 arrives here: old workers' version 1
    goes on their single channel, which new workers do not listen to (they read the log every
    round while an old worker listens there)."""
    body = json.loads(data)
    account_id = body["a"]
    if body.get("v") != 2:
        raise ValueError(f"unknown events message version {body.get('v')!r}")
    return account_id, [
        EventRecord(account_id, seq, event_type, event_id, data_json)
        for seq, event_type, event_id, data_json in body["e"]
    ]


def encode_legacy_events_message(account_id, events):
    """The message of workers before version 2 (``{"a": account, "e": [[seq, SSE frame]]}``)
    on their single channel: old workers still listening there during a rolling upgrade get
    new workers' events at once, as the very frames they would have sent."""
    return json.dumps({"a": account_id, "e": [[e.seq, e.frame.decode()] for e in events]})


class RedisBroker:
    """The broker interface (see ``broker.py``) over Redis, for many workers and hosts.

    ``revoked_keys(key_ids) -> set`` reads which keys are revoked in the database: a
    revocation whose pub/sub message was lost still ends its streams within a second.
    ``cluster``: ``url`` names one node of a Redis Cluster (7 or later: sharded pub/sub).
    """

    name = "redis"

    def __init__(
        self,
        hub,
        url,
        *,
        prefix="qrevents:",
        revoked_keys=None,
        publish_queue_size=1000,
        cluster=False,
    ):
        self.hub = hub
        self.prefix = prefix
        self.cluster = cluster
        self.legacy_channel = f"{prefix}events".encode()  # old workers' one channel
        self.revocations_channel = f"{prefix}revocations".encode()
        self._channel_head = f"{prefix}events:{{".encode()
        self.workers_key = f"{prefix}workers"
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.counts_key = f"{prefix}streams:{self.worker_id}"
        self.alive_key = f"{prefix}alive:{self.worker_id}"
        self.revoked_keys = revoked_keys
        self._options = {"socket_connect_timeout": 1.0, "socket_keepalive": True}
        # Commands fail fast (one retry: a pooled connection may predate a Redis restart),
        # over a few connections per worker whatever the number of streams.
        command_options = {"socket_timeout": 1.0, "retry": Retry(NoBackoff(), 1)}
        if cluster:
            self.redis = redis.RedisCluster.from_url(
                url, max_connections=COMMAND_CONNECTIONS, **command_options, **self._options
            )
        else:
            self.redis = redis.Redis(
                connection_pool=redis.BlockingConnectionPool.from_url(
                    url,
                    max_connections=COMMAND_CONNECTIONS,
                    timeout=1.0,
                    **command_options,
                    **self._options,
                )
            )
        self._url = url
        self._publish_script = self.redis.register_script(PUBLISH_SCRIPT)
        self._take_script = self.redis.register_script(TAKE_SLOT_SCRIPT)
        self._publish_command = "SPUBLISH" if cluster else "PUBLISH"
        self._listeners = {}  # node name -> _Listener
        self._wanted = {}  # account_id -> interests (a served channel, a held webhook)
        self._to_check = set()  # accounts whose subscription Redis confirmed: read watermarks
        self._check_signal = Signal()
        self._outbox = Queue(max(1, publish_queue_size))  # (kind, message), for the publisher
        self._owed = {}  # account_id -> seq: notices the publisher owes (publishes that failed)
        self._dropped = 0  # messages dropped since the last warning
        self._warned_at = float("-inf")
        self._slots = {}  # account_id -> lease ids this worker holds
        self._lease_ids = itertools.count(1)
        self._releases = []  # StreamSlots to remove from Redis
        self._release_signal = Signal()
        self._others = {}  # other workers' counts, last read
        self._others_read_at = float("-inf")
        self._alive_seen = set()  # other workers seen alive
        self._full_reconcile = True  # at the next round: read every served account's log
        self._rounds = 0
        self.legacy = False  # old workers listen on the single channel (a rolling upgrade)
        self._greenlets = []
        hub.interest = self

    def start(self):
        """Spawn the listeners, the publisher and the heartbeat (once per worker)."""
        if not self._greenlets:
            self._greenlets = [
                gevent.spawn(self._listen_nodes),
                gevent.spawn(self._publish_outbox),
                gevent.spawn(self._heartbeat),
                gevent.spawn(self._check_watermarks),
                gevent.spawn(self._release_slots),
            ]

    @property
    def listening(self):
        return bool(self._listeners) and all(li.live for li in self._listeners.values())

    # -- names -----------------------------------------------------------------------------

    def channel(self, account_id):
        return self._channel_head + b"%d}" % account_id

    def _account_of(self, channel):
        if channel.startswith(self._channel_head) and channel.endswith(b"}"):
            try:
                return int(channel[len(self._channel_head) : -1])
            except ValueError:
                return None
        return None

    def _seq_key(self, account_id):
        return f"{self.prefix}seq:{{{account_id}}}"

    def _slots_key(self, account_id):
        return f"{self.prefix}slots:{{{account_id}}}"

    # -- which accounts this worker listens to ---------------------------------------------

    def watch(self, account_id):
        """Listen to the account's channel (counted: call ``unwatch`` once per ``watch``)."""
        count = self._wanted.get(account_id, 0)
        self._wanted[account_id] = count + 1
        if not count:
            self._wake_listener_of(account_id)

    def unwatch(self, account_id):
        count = self._wanted.pop(account_id, 0) - 1
        if count > 0:
            self._wanted[account_id] = count
        else:
            self._wake_listener_of(account_id)

    def _wake_listener_of(self, account_id):
        listener = self._listener_of(self.channel(account_id))
        if listener is not None:
            listener.changed.add(account_id)
            listener.wake.set()

    def _listener_of(self, channel):
        if not self.cluster:
            return self._listeners.get("")
        try:
            node = self.redis.get_node_from_key(channel)
        except (RedisError, IndexError):
            return None
        return self._listeners.get(node.name) if node is not None else None

    def _listen_nodes(self):
        """One listener per node (per primary of a cluster); a new topology starts anew."""
        while True:
            try:
                nodes = self._nodes()
            except (RedisError, OSError) as exc:
                log.warning("reading the Redis Cluster's nodes failed: %s", exc)
                gevent.sleep(RECONNECT_MAX)
                continue
            listeners = {name: _Listener(self, name, client) for name, client in nodes.items()}
            self._listeners = listeners
            revocations = self._listener_of(self.revocations_channel)
            if revocations is not None:
                revocations.base = [self.revocations_channel]
            running = [gevent.spawn(li.run) for li in listeners.values()]
            gevent.joinall(running, count=1)  # a listener returns when the topology changed
            gevent.killall(running)
            if self.cluster:
                try:
                    self.redis.nodes_manager.initialize()
                except (RedisError, OSError) as exc:
                    log.warning("refreshing the Redis Cluster's slots failed: %s", exc)
            gevent.sleep(RECONNECT_MIN)

    def _nodes(self):
        listen = {
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": LISTENER_HEALTH_CHECK,
            "socket_keepalive_options": LISTENER_KEEPALIVE,
            **self._options,
        }
        if not self.cluster:
            return {"": redis.Redis.from_url(self._url, **listen)}
        return {
            node.name: redis.Redis(host=node.host, port=node.port, **listen)
            for node in self.redis.get_primaries()
        }

    def wanted_on(self, listener):
        """The accounts ``listener`` should be subscribed to now."""
        if not self.cluster:
            return set(self._wanted)
        return {a for a in self._wanted if self._listener_of(self.channel(a)) is listener}

    def _listener_up(self, listener, first):
        """A listener (re)subscribed: what was announced while it was not listening is in the
        log (at start, nothing is served yet)."""
        if not first:
            self._full_reconcile = True
        self._catch_up()

    def _catch_up(self):
        self._full_reconcile = False
        try:
            self.hub.reconcile()
        except Exception:
            log.exception("catching up with the event log failed")
            self._full_reconcile = True

    # -- sending ---------------------------------------------------------------------------

    def publish(self, account_id, events):
        """Send committed events to the workers serving the account; never waits on Redis
        nor fails the request that made them. This worker's streams get them now."""
        if not self._greenlets:
            self._publish_now(account_id, events)  # a command-line process: no publisher
        elif self.listening:
            self._post("events", (account_id, events))
        else:
            self._owe(account_id, max(event.seq for event in events))
        self.hub.deliver(account_id, events)

    def revoke(self, api_key_id):
        """End the key's streams here at once, and on every other worker through Redis (or
        within a second from the database, should the message not get through)."""
        self.hub.close_key_streams(api_key_id)
        self._post("revocation", api_key_id)

    def _post(self, kind, message):
        try:
            self._outbox.put_nowait((kind, message))
        except Full:
            metrics.BROKER_MESSAGES_DROPPED.inc()
            if kind == "events":
                account_id, events = message
                self._owe(account_id, max(event.seq for event in events))
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

    def _owe(self, account_id, seq):
        if seq > self._owed.get(account_id, 0):
            self._owed[account_id] = seq

    def _publish_outbox(self):
        """The worker's one publisher: messages leave in the order they were posted; owed
        notices go out once Redis answers again."""
        retry_at = 0.0
        while True:
            try:
                kind, message = self._outbox.get(timeout=OWED_RETRY_SECONDS if self._owed else None)
            except Empty:
                kind = None
            if kind == "events":
                account_id, events = message
                try:
                    self._send_events(account_id, events)
                except RedisError as exc:
                    log.warning("publishing events of account %s failed: %s", account_id, exc)
                    self._owe(account_id, max(event.seq for event in events))
            elif kind == "revocation":
                try:
                    self._send(self.revocations_channel, str(message))
                except RedisError as exc:
                    log.warning("publishing a revocation failed: %s", exc)
            if self._owed and time.monotonic() >= retry_at:
                if not self._send_notices():
                    retry_at = time.monotonic() + OWED_RETRY_SECONDS

    def _publish_raising_watermark(self, account_id, seq, message):
        """Publish on the account's channel and raise its watermark to ``seq``, atomically."""
        self._publish_script(
            keys=[self._seq_key(account_id)],
            args=[
                seq,
                WATERMARK_TTL_SECONDS,
                self._publish_command,
                self.channel(account_id),
                message,
            ],
        )

    def _send_events(self, account_id, events):
        seq = max(event.seq for event in events)
        self._publish_raising_watermark(account_id, seq, encode_events_message(account_id, events))
        if self.legacy:
            self.redis.publish(
                self.legacy_channel, encode_legacy_events_message(account_id, events)
            )

    def _send_notices(self):
        """Tell each owed account's listeners where its log reaches; False if Redis fails."""
        while self._owed:
            account_id, seq = next(iter(self._owed.items()))
            try:
                self._publish_raising_watermark(account_id, seq, NOTICE + b"%d" % seq)
            except RedisError as exc:
                log.debug("sending a notice for account %s failed: %s", account_id, exc)
                return False
            if self._owed.get(account_id) == seq:
                del self._owed[account_id]
        return True

    def _send(self, channel, message):
        if self.cluster:
            self.redis.execute_command("SPUBLISH", channel, message)
        else:
            self.redis.publish(channel, message)

    def _publish_now(self, account_id, events):
        try:
            self._send_events(account_id, events)
        except RedisError as exc:
            log.warning("publishing events of account %s failed: %s", account_id, exc)

    # -- receiving -------------------------------------------------------------------------

    def _on_message(self, message):
        kind = message["type"]
        if kind in ("message", "smessage"):
            self._dispatch(message["channel"], message["data"])
        elif kind in ("subscribe", "ssubscribe"):
            account_id = self._account_of(message["channel"])
            if account_id is not None:
                self._to_check.add(account_id)
                self._check_signal.set()

    def _dispatch(self, channel, data):
        try:
            account_id = self._account_of(channel)
            if account_id is not None and data.startswith(NOTICE):
                self.hub.catch_up(account_id, int(data[len(NOTICE) :]))
            elif account_id is not None:
                self.hub.deliver(*decode_events_message(data))
            elif channel == self.revocations_channel:
                self.hub.close_key_streams(int(data))
        except (ValueError, KeyError, TypeError):
            log.error("ignoring a malformed message on %r: %r", channel, data[:200])

    def _check_watermarks(self):
        """Confirmed subscriptions: what was published before them is under the watermark."""
        while True:
            self._check_signal.wait()
            self._check_signal.clear()
            accounts, self._to_check = list(self._to_check), set()
            try:
                keys = [self._seq_key(a) for a in accounts]
                seqs = self.redis.mget_nonatomic(keys) if self.cluster else self.redis.mget(keys)
            except RedisError as exc:
                # The listener's connection is likely gone too: it catches up when back.
                log.warning("reading watermarks failed: %s", exc)
                self._full_reconcile = True
                continue
            for account_id, seq in zip(accounts, seqs, strict=True):
                if seq is not None:
                    self.hub.catch_up(account_id, int(seq))

    def reconcile(self):
        """The periodic round: read every served account's log only when something may have
        been missed that no watermark or notice covers (see the module's docstring)."""
        self._rounds += 1
        if (
            self._full_reconcile
            or self.legacy
            or not self.listening
            or self._rounds >= FULL_RECONCILE_ROUNDS
        ):
            self._rounds = 0
            self._catch_up()

    # -- the per-account stream limit ------------------------------------------------------

    def take_stream_slot(self, account_id, limit):
        """A ``StreamSlot`` if the account has fewer than ``limit`` streams on every live
        worker, else None: a lease in Redis, taken atomically, renewed by this worker's
        heartbeat (a dead worker's lapse within seconds). Redis unreachable: the limit is
        applied to this worker's own streams, and its leases enter Redis when it is back."""
        if limit <= 0:
            return None
        lease_id = f"{self.worker_id}:{next(self._lease_ids)}"
        try:
            taken = self._take_script(
                keys=[self._slots_key(account_id)], args=[limit, COUNTS_TTL_MS, lease_id]
            )
        except RedisError as exc:
            log.warning("taking a stream slot in Redis failed, counting locally: %s", exc)
            taken = len(self._slots.get(account_id, ())) < limit
        if not taken:
            return None
        # Other handshakes of the account ran while this one waited on Redis: the lease
        # joins the account's set as it is now (made anew if they emptied it).
        self._slots.setdefault(account_id, set()).add(lease_id)
        return StreamSlot(account_id, lease_id, self._free_slot)

    def _free_slot(self, slot):
        held = self._slots.get(slot.account_id)
        if held is not None:
            held.discard(slot.lease_id)
            if not held:
                del self._slots[slot.account_id]
        self._releases.append(slot)
        self._release_signal.set()

    def _release_slots(self):
        """Remove released leases from Redis, off the closing stream's path."""
        while True:
            self._release_signal.wait()
            self._release_signal.clear()
            slots, self._releases = self._releases, []
            try:
                with self.redis.pipeline(transaction=False) as pipe:
                    for slot in slots:
                        pipe.zrem(self._slots_key(slot.account_id), slot.lease_id)
                    pipe.execute()
            except RedisError as exc:
                log.debug("releasing stream slots failed (they lapse): %s", exc)

    def _renew_slots(self):
        if not self._slots:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for account_id, leases in self._slots.items():
                pipe.eval(
                    RENEW_SLOTS_SCRIPT, 1, self._slots_key(account_id), COUNTS_TTL_MS, *leases
                )
            pipe.execute()

    # -- deployment-wide counts ------------------------------------------------------------

    def _heartbeat(self):
        """Every second: this worker's counts and leases, who else lives, revoked keys."""
        while True:
            try:
                self._write_counts()
                self._renew_slots()
                self._look_at_workers()
            except RedisError as exc:
                log.debug("the Redis heartbeat failed: %s", exc)
            self._close_revoked_streams()
            gevent.sleep(COUNTS_INTERVAL)

    def _write_counts(self):
        counts = self.hub.stream_counts()
        with self.redis.pipeline(transaction=not self.cluster) as pipe:
            pipe.delete(self.counts_key)
            if counts:
                pipe.hset(self.counts_key, mapping=counts)
                pipe.pexpire(self.counts_key, COUNTS_TTL_MS)
            pipe.set(self.alive_key, 1, px=COUNTS_TTL_MS)
            pipe.sadd(self.workers_key, self.worker_id)
            pipe.pexpire(self.workers_key, COUNTS_TTL_MS)  # gone with the last live worker
            pipe.execute()

    def _look_at_workers(self):
        """A worker that disappeared may have died between a commit and its publish: read
        the log once. Old workers listening on the single channel: read it every round."""
        workers = [w.decode() for w in self.redis.smembers(self.workers_key)]
        others = [w for w in workers if w != self.worker_id]
        keys = [f"{self.prefix}alive:{w}" for w in others]
        alive = self.redis.mget_nonatomic(keys) if self.cluster else self.redis.mget(keys)
        alive = {w for w, flag in zip(others, alive, strict=True) if flag is not None}
        if self._alive_seen - alive:
            self._full_reconcile = True
        self._alive_seen = alive
        if not self.cluster:
            ((_, listeners),) = self.redis.pubsub_numsub(self.legacy_channel)
            self.legacy = listeners > 0

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
        """Redis answers and this worker's listeners are subscribed."""
        try:
            return self.listening and bool(self.redis.ping())
        except RedisError:
            return False


class _Listener:
    """The pub/sub connection to one node: a greenlet reads it, another (``_sync``) sends
    SUBSCRIBE and UNSUBSCRIBE as the accounts served change."""

    def __init__(self, broker, name, client):
        self.broker = broker
        self.name = name
        self.client = client
        self.base = []  # channels always listened to here (the revocations)
        self.live = False
        self.pubsub = None
        self.sent = set()  # accounts subscribed on this connection
        self.changed = set()  # accounts watched or unwatched since the last sync
        self.wake = Signal()
        sharded = broker.cluster
        self._subscribe = "ssubscribe" if sharded else "subscribe"
        self._unsubscribe = "sunsubscribe" if sharded else "unsubscribe"

    def run(self):
        """Listen until the topology changes (cluster: a MOVED answer); reconnect on errors."""
        delay, first = RECONNECT_MIN, True
        syncing = gevent.spawn(self._sync)
        try:
            while True:
                pubsub = self.client.pubsub()
                try:
                    self._confirm(pubsub)
                    if not self.live:
                        log.info(
                            "listening to Redis %s as worker %s",
                            self.name or "",
                            self.broker.worker_id,
                        )
                    self.pubsub, self.sent, self.live = pubsub, set(), True
                    self.changed = self.broker.wanted_on(self)
                    delay = RECONNECT_MIN
                    self.wake.set()
                    self.broker._listener_up(self, first)
                    first = False
                    self._read(pubsub)
                except redis.ResponseError as exc:
                    if "MOVED" in str(exc) and self.broker.cluster:
                        log.warning("Redis Cluster slots moved: %s", exc)
                        return
                    log.warning("Redis listener failed: %s", exc)
                except (RedisError, OSError) as exc:
                    if self.live:
                        log.warning("Redis listener lost its connection: %s", exc)
                except Exception:
                    # Never let the one listener of this worker die: start it over.
                    log.exception("Redis listener failed")
                finally:
                    self.live, self.pubsub = False, None
                    try:
                        pubsub.close()
                    except (RedisError, OSError):
                        pass
                gevent.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
        finally:
            syncing.kill(block=False)

    def _read(self, pubsub):
        heard_at = pinged_at = time.monotonic()
        while True:
            message = pubsub.get_message(timeout=LISTEN_TIMEOUT)
            now = time.monotonic()
            if message is not None:
                heard_at = now
                self.broker._on_message(message)
            elif now - heard_at > HUNG_SECONDS:
                raise redis.ConnectionError("no answer from Redis (a silent partition?)")
            elif now - max(heard_at, pinged_at) > PING_SECONDS:
                pubsub.ping()
                pinged_at = now

    def _confirm(self, pubsub):
        """Subscribe to the base channels and wait until Redis confirms."""
        pending = set(self.base)
        if not pending:
            return
        getattr(pubsub, self._subscribe)(*pending)
        deadline = time.monotonic() + 2 * LISTEN_TIMEOUT
        while pending:
            if time.monotonic() > deadline:
                raise redis.ConnectionError("no confirmation of SUBSCRIBE from Redis")
            message = pubsub.get_message(timeout=LISTEN_TIMEOUT)
            if message is None:
                continue
            if message["type"] in ("subscribe", "ssubscribe"):
                pending.discard(message["channel"])
            self.broker._on_message(message)

    def _sync(self):
        """Bring this connection's subscriptions to the accounts served, in batches."""
        while True:
            self.wake.wait()
            self.wake.clear()
            pubsub = self.pubsub
            if pubsub is None:
                continue
            changed, self.changed = self.changed, set()
            wanted = {a for a in changed if a in self.broker._wanted}
            add, remove = wanted - self.sent, (changed - wanted) & self.sent
            try:
                self._send(pubsub, self._subscribe, [self.broker.channel(a) for a in add])
                self._send(pubsub, self._unsubscribe, [self.broker.channel(a) for a in remove])
            except (RedisError, OSError) as exc:
                log.warning("changing Redis subscriptions failed: %s", exc)
                pubsub.close()  # the listener reconnects and subscribes anew
                continue
            if pubsub is self.pubsub:
                self.sent = (self.sent | add) - remove

    def _send(self, pubsub, command, channels):
        channels = sorted(channels)
        # Sharded: one command per channel (a command's channels must share a slot).
        step = 1 if self.broker.cluster else SUBSCRIBE_BATCH
        for start in range(0, len(channels), step):
            getattr(pubsub, command)(*channels[start : start + step])
