"""The benchmark's scenarios (BENCHMARKS.md), run once (one repetition) against one started server.

A repetition holds idle streams of one channel at rising levels, sends single events to
them, then saturates them with events; then it opens streams spread over many channels
(accounts) for open-loop payments, a rate sweep and a reconnect storm. Every phase reads
the server's CPU and RSS from /proc before and after, and the client's own CPU.
"""

import asyncio
import gc
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from time import monotonic_ns

from .client import HttpClient, StreamPool, Tally, marker, open_loop
from .servers import cpu_seconds, redis_cpu_seconds, rss_kb

CLIENT_BOUND = 90.0  # % of the client's core: above it, the client may be the bottleneck
SWEEP_P99_MS = 50.0


@dataclass(frozen=True)
class Scale:
    levels: tuple
    fanout_streams: int
    fanout_events: int
    saturation_events: int
    accounts: int
    per_account: int
    payment_rate: int
    payment_seconds: float
    sweep_rates: tuple
    sweep_seconds: float
    storm_live_rate: int
    ramp_rate: int
    in_flight: int


FULL = Scale(
    levels=(1000, 5000, 10000, 19000),
    fanout_streams=10000,
    fanout_events=10,
    saturation_events=12,
    accounts=1000,
    per_account=10,
    payment_rate=500,
    payment_seconds=5,
    sweep_rates=(50, 100, 250, 500, 750, 1000, 1500, 2000),
    sweep_seconds=3,
    storm_live_rate=100,
    ramp_rate=2000,
    in_flight=64,
)
QUICK = Scale(
    levels=(200, 500),
    fanout_streams=500,
    fanout_events=3,
    saturation_events=5,
    accounts=50,
    per_account=4,
    payment_rate=100,
    payment_seconds=2,
    sweep_rates=(50, 100, 200, 400),
    sweep_seconds=2,
    storm_live_rate=50,
    ramp_rate=1000,
    in_flight=32,
)


def pct(values, q):
    """The ``q``-th percentile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def failure(status):
    """How a request failed, for the counts of failures by kind."""
    return f"HTTP {status}" if status else "no connection"


def ms(ns):
    return None if ns is None else round(ns / 1e6, 3)


class Sample:
    """Server CPU and RSS, Redis CPU and the client's CPU at one moment."""

    def __init__(self, server):
        pids = server.pids()
        self.wall = time.monotonic()
        self.cpu = cpu_seconds(pids)
        self.rss = rss_kb(pids)
        self.redis = redis_cpu_seconds(server.redis_url)
        self.client = time.process_time()

    def since(self, before):
        """Deltas: server CPU s, Redis CPU s (or None), wall s, client CPU % of its core."""
        wall = max(self.wall - before.wall, 1e-9)
        redis = None if self.redis is None else self.redis - before.redis
        return self.cpu - before.cpu, redis, wall, 100 * (self.client - before.client) / wall


class Repetition:
    """One run of every scenario against ``server`` with its ``channels`` (accounts)."""

    def __init__(self, server, channels, scale, log):
        self.server = server
        self.channels = channels
        self.scale = scale
        self.log = log
        self.pool = StreamPool(server.host, server.port)
        self.http = HttpClient(server.host, server.port, max_connections=512)
        self.seq = 0
        self.expected = {}  # channel index -> [seq answered 2xx]
        self.publish_errors = Counter()  # "HTTP <status>" (or "no connection") -> count
        self.opened_ns = 0
        self.hold_base = None

    # -- helpers ----------------------------------------------------------------------------

    def sample_after_gc(self):
        """The client collects its garbage between phases, never inside one (see ``run``)."""
        gc.collect()
        return Sample(self.server)

    def request_for(self, index, kind, due=None):
        self.seq += 1
        due = monotonic_ns() if due is None else due
        raw = self.server.publish_request(self.channels[index], marker(self.seq, due), kind)
        return self.seq, raw

    async def publish(self, index, kind):
        """One event, waiting for the answer; its seq, or None if refused."""
        seq, raw = self.request_for(index, kind)
        try:
            status, _ = await self.http.request(raw)
        except (ConnectionError, OSError):
            status = 0
        if 200 <= status < 300:
            self.expected.setdefault(index, []).append(seq)
            return seq
        self.publish_errors[failure(status)] += 1
        return None

    async def until(self, condition, timeout, step=0.02):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(step)
        return True

    async def settle(self, quiet=0.3, timeout=20):
        """Wait until the server's CPU stops moving (work queued behind the sockets is done)."""
        deadline = time.monotonic() + timeout
        last = cpu_seconds(self.server.pids())
        while time.monotonic() < deadline:
            await asyncio.sleep(quiet)
            now = cpu_seconds(self.server.pids())
            if now - last <= 0.02:
                return
            last = now

    async def open_streams(self, specs, rate=None, in_flight=None):
        """Open streams for ``[(channel index, last id)]``; wait until they are ready."""
        server = self.server
        requests = [(i, server.stream_request(self.channels[i], last)) for i, last in specs]
        # flask-sse answers nothing until its first event: there, a connection counts.
        streams = await self.pool.open(
            requests,
            rate or self.scale.ramp_rate,
            in_flight or self.scale.in_flight,
            answered_on_connect=not server.has_connection_event,
        )
        self.opened_ns = monotonic_ns()
        if server.has_connection_event:
            await self.until(lambda: all(s.first or not s.open for s in streams), 30)
        else:
            await self.settle()
        return streams

    async def first_event_alone(self, count=20):
        """Connect → first event for streams opened one at a time: no ramp queue in front."""
        if not self.server.has_connection_event:
            return None, None
        took = []
        for _ in range(count):
            # Another account than the held streams': these few closed streams get no events.
            (stream,) = await self.open_streams([(1, None)], in_flight=1)
            if stream.first:
                took.append(stream.first - stream.started)
            self.pool.close([stream])
        return ms(pct(took, 50)), ms(pct(took, 99))

    async def prime(self, streams):
        """flask-sse: an event per channel until every stream proves it is subscribed."""
        if self.server.has_connection_event:
            return
        saved, self.pool.tally = self.pool.tally, Tally()
        for index in sorted({s.channel for s in streams}):
            await self.publish(index, "prime")
        await self.until(lambda: all(s.first or not s.open for s in streams), 15)
        self.pool.tally = saved

    def losses(self, streams, seqs_of):
        """Expected events missing at ``streams``: ``seqs_of(stream) -> expected seqs``."""
        return sum(len(set(seqs_of(s)) - s.seen) for s in streams)

    def delivery_stats(self, tally):
        lat = tally.latencies
        return {
            "deliveries": tally.deliveries,
            "latency_p50_ms": ms(pct(lat, 50)),
            "latency_p99_ms": ms(pct(lat, 99)),
            "latency_max_ms": ms(max(lat) if lat else None),
            "duplicates": tally.duplicates,
        }

    # -- scenarios -------------------------------------------------------------------------

    async def hold(self, levels):
        """Idle streams of one channel at rising levels: RSS and CPU per stream."""
        if self.hold_base is None:
            self.hold_base = Sample(self.server)
        base = self.hold_base
        rows = {}
        for level in levels:
            new = level - len(self.pool.streams)
            if new <= 0:
                continue
            before = self.sample_after_gc()
            streams = await self.open_streams([(0, None)] * new)
            after = Sample(self.server)
            cpu, redis, wall, client = after.since(before)
            held = self.pool.open_streams
            firsts = [s.first - s.started for s in streams if s.first]
            rows[str(level)] = {
                "held": held,
                "failed": self.pool.failed,
                "rejected": self.pool.rejected,
                "rss_per_stream_kb": round((after.rss - base.rss) / max(held, 1), 2),
                "cpu_per_new_stream_ms": round(1000 * cpu / new, 4),
                "redis_cpu_per_new_stream_ms": (
                    None if redis is None else round(1000 * redis / new, 4)
                ),
                "first_event_p50_ms": ms(pct(firsts, 50)),
                "first_event_p99_ms": ms(pct(firsts, 99)),
                "ramp_seconds": round(wall, 2),
                "client_cpu_pct": round(client, 1),
            }
            self.log(f"  hold {level}: {rows[str(level)]}")
        return rows

    async def fanout(self):
        """Single events to ``fanout_streams`` streams of one channel, one after another."""
        keep = self.pool.streams[: self.scale.fanout_streams]
        self.pool.close(self.pool.streams[self.scale.fanout_streams :])
        await asyncio.sleep(0.5)
        await self.prime(keep)
        streams = [s for s in keep if s.open]
        self.pool.tally = tally = Tally()
        before = self.sample_after_gc()
        seqs = []
        for _ in range(self.scale.fanout_events):
            seq = await self.publish(0, "fanout")
            if seq is not None:
                seqs.append(seq)
                await self.until(lambda s=seq: tally.arrivals.get(s, [0])[0] >= len(streams), 10)
            await asyncio.sleep(0.2)
        cpu, _, _, client = Sample(self.server).since(before)
        arrivals = [tally.arrivals[s] for s in seqs if s in tally.arrivals]
        to_last = [last - due for _, _, last, due in arrivals]
        to_first = [first - due for _, first, _, due in arrivals]
        result = {
            "streams": len(streams),
            "events": len(seqs),
            "to_last_p50_ms": ms(statistics.median(to_last) if to_last else None),
            "to_last_max_ms": ms(max(to_last) if to_last else None),
            "to_first_p50_ms": ms(statistics.median(to_first) if to_first else None),
            "cpu_per_delivery_us": round(1e6 * cpu / max(tally.deliveries, 1), 2),
            "lost": self.losses(streams, lambda s: seqs),
            "client_cpu_pct": round(client, 1),
            **self.delivery_stats(tally),
        }
        self.log(f"  fanout: {result}")
        return result

    async def saturation(self):
        """Events back to back to the same streams: CPU per delivery when the core is busy."""
        streams = [s for s in self.pool.streams if s.open]
        self.pool.tally = tally = Tally()
        before = self.sample_after_gc()
        seqs = []
        gate = asyncio.Semaphore(2)

        async def one():
            async with gate:
                seq = await self.publish(0, "fanout")
                if seq is not None:
                    seqs.append(seq)

        await asyncio.gather(*(one() for _ in range(self.scale.saturation_events)))
        await self.until(lambda: tally.deliveries >= len(seqs) * len(streams), 60)
        after = Sample(self.server)
        cpu, redis, wall, client = after.since(before)
        arrivals = [tally.arrivals[s] for s in seqs if s in tally.arrivals]
        span = (max(a[2] for a in arrivals) - min(a[3] for a in arrivals)) if arrivals else 0
        result = {
            "streams": len(streams),
            "events": len(seqs),
            "cpu_per_delivery_us": round(1e6 * cpu / max(tally.deliveries, 1), 2),
            "redis_cpu_per_delivery_us": (
                None if redis is None else round(1e6 * redis / max(tally.deliveries, 1), 2)
            ),
            "deliveries_per_s": round(tally.deliveries / (span / 1e9)) if span else None,
            "client_cpu_per_delivery_us": round(1e4 * client * wall / max(tally.deliveries, 1), 2),
            "lost": self.losses(streams, lambda s: seqs),
            "client_cpu_pct": round(client, 1),
            **self.delivery_stats(tally),
        }
        self.log(f"  saturation: {result}")
        return result

    async def restart_server(self):
        """Close every stream and start the server afresh (same database, same channels)."""
        self.pool.close(self.pool.streams)
        self.http.close()
        await asyncio.sleep(0.3)
        self.server.stop()
        self.server.start()
        self.pool = StreamPool(self.server.host, self.server.port)
        self.http = HttpClient(self.server.host, self.server.port, max_connections=512)

    async def open_payment_streams(self):
        # flask-sse holds a Redis connection per stream: fewer streams per account there.
        per_account = range(
            min(self.scale.per_account, self.server.max_streams // self.scale.accounts)
        )
        specs = [(a, None) for a in range(self.scale.accounts) for _ in per_account]
        streams = await self.open_streams(specs)
        await self.prime(streams)
        return streams

    async def payments(self, rate, seconds):
        """Open-loop payments over every channel at ``rate``/s; latency at the subscribers."""
        streams = [s for s in self.pool.streams if s.open]
        by_channel = {}
        for stream in streams:
            by_channel.setdefault(stream.channel, []).append(stream)
        channels = sorted(by_channel)
        self.pool.tally = tally = Tally()
        sent = {}
        accepted = {}
        answered = {"ok": 0, "errors": 0}
        error_kinds = Counter()

        def make(index, due):
            channel = channels[index % len(channels)]
            seq, raw = self.request_for(channel, "payment", due)
            sent[index] = (channel, seq)
            return raw

        def on_result(index, status):
            channel, seq = sent[index]
            if 200 <= status < 300:
                answered["ok"] += 1
                accepted.setdefault(channel, set()).add(seq)
            else:
                answered["errors"] += 1
                error_kinds[failure(status)] += 1

        before = self.sample_after_gc()
        started = time.monotonic()
        # At most two seconds of work queued: enough to show an overload, bounded in time.
        not_sent = await open_loop(self.http, make, rate, seconds, on_result, 2 * rate)
        took = time.monotonic() - started
        want = sum(len(accepted.get(s.channel, ())) for s in streams)
        await self.until(lambda: tally.deliveries >= want, 10)
        cpu, redis, wall, client = Sample(self.server).since(before)
        result = {
            "rate": rate,
            "offered": len(sent) + not_sent,
            "not_sent": not_sent,
            "accepted": answered["ok"],
            "errors": answered["errors"],
            "error_kinds": dict(error_kinds),
            "answered_rate": round(answered["ok"] / took, 1),
            "streams": len(streams),
            "lost": self.losses(streams, lambda s: accepted.get(s.channel, ())),
            "server_cpu_pct": round(100 * cpu / wall, 1),
            "cpu_per_payment_ms": round(1000 * cpu / max(answered["ok"], 1), 3),
            "redis_cpu_pct": None if redis is None else round(100 * redis / wall, 1),
            "client_cpu_pct": round(client, 1),
            **self.delivery_stats(tally),
        }
        self.log(f"  payments @{rate}/s: {result}")
        return result

    async def sweep(self):
        """Rising open-loop rates; the highest whose p99 stays within 50 ms, with no loss."""
        rows, best = [], None
        for rate in self.scale.sweep_rates:
            await self.settle(quiet=0.2, timeout=10)
            row = await self.payments(rate, self.scale.sweep_seconds)
            row["passed"] = (
                row["latency_p99_ms"] is not None
                and row["latency_p99_ms"] <= SWEEP_P99_MS
                and row["lost"] == 0
                and row["errors"] == 0
                and row["not_sent"] == 0
                and row["answered_rate"] >= 0.95 * rate
            )
            rows.append(row)
            if not row["passed"]:
                break
            best = rate
        return {"highest_rate_p99_50ms": best, "rows": rows}

    async def storm(self):
        """Drop every stream at once, publish while they are gone, reconnect them all."""
        old = [s for s in self.pool.streams if s.open]
        last_ids = [(s.channel, s.last_id) for s in old]
        self.pool.close(old)
        await asyncio.sleep(0.3)
        self.expected = {}
        publish_errors = Counter(self.publish_errors)
        channels = sorted({channel for channel, _ in last_ids})
        gate = asyncio.Semaphore(32)

        async def missed(index):
            async with gate:
                await self.publish(index, "payment")

        await asyncio.gather(*(missed(index) for index in channels))
        missed_seqs = {index: set(seqs) for index, seqs in self.expected.items()}
        self.pool.tally = tally = Tally()
        before = self.sample_after_gc()
        started = monotonic_ns()
        live_done = asyncio.Event()

        async def live():
            # Payments keep coming while the clients come back.
            await asyncio.sleep(0.05)
            index = 0
            while not live_done.is_set():
                await self.publish(channels[index % len(channels)], "payment")
                index += 1
                await asyncio.sleep(1 / self.scale.storm_live_rate)

        live_task = asyncio.create_task(live())
        specs = [
            (channel, last if self.server.supports_resume else None) for channel, last in last_ids
        ]
        failures = Counter(self.pool.failures)
        streams = await self.open_streams(specs, rate=1e6, in_flight=1000)
        connected = self.opened_ns - started
        reconnected = monotonic_ns() - started
        resumed = await self.until(
            lambda: all(missed_seqs.get(s.channel, set()) <= s.seen for s in streams),
            15 if self.server.supports_resume else 2,
            step=0.05,
        )
        resumed_ns = monotonic_ns() - started
        await asyncio.sleep(1.0)
        live_done.set()
        await live_task
        want = {index: set(seqs) for index, seqs in self.expected.items()}
        await self.until(
            lambda: all(want.get(s.channel, set()) <= s.seen for s in streams), 10, step=0.05
        )
        cpu, redis, _, client = Sample(self.server).since(before)
        result = {
            "streams": len(streams),
            "open_after": sum(1 for s in streams if s.open and s.status == 200),
            # Refused or failed handshakes by kind, and streams the server ended after its 200.
            "not_reopened": dict(self.pool.failures - failures),
            "closed_after_200": sum(1 for s in streams if s.status == 200 and not s.open),
            "missed_events": sum(len(v) for v in missed_seqs.values()),
            "all_connected_s": round(connected / 1e9, 3),
            "all_reconnected_s": (
                round(reconnected / 1e9, 3) if self.server.has_connection_event else None
            ),
            "all_resumed_s": round(resumed_ns / 1e9, 3) if resumed else None,
            "lost": self.losses(streams, lambda s: want.get(s.channel, ())),
            "duplicates": tally.duplicates,
            "server_cpu_s": round(cpu, 3),
            "redis_cpu_s": None if redis is None else round(redis, 3),
            "client_cpu_pct": round(client, 1),
            "publish_errors": dict(self.publish_errors - publish_errors),
        }
        self.log(f"  storm: {result}")
        return result

    async def run(self):
        # A full collection over tens of thousands of streams would stall the client's loop
        # and show up as server latency: the client only collects between phases.
        gc.disable()
        try:
            return await self._run()
        finally:
            gc.enable()

    async def _run(self):
        # A gevent WSGI server learns that a client left only when it next writes to it
        # (a heartbeat, 30 s later): streams closed by the client would still cost the server
        # in later phases. So levels above the fan-out's are held after it, and the
        # payment phases start on a freshly started server.
        levels = sorted({min(level, self.server.max_streams) for level in self.scale.levels})
        first = [level for level in levels if level <= self.scale.fanout_streams]
        result = {"hold": await self.hold(first)}
        result["fanout"] = await self.fanout()
        result["saturation"] = await self.saturation()
        result["hold"].update(await self.hold([lv for lv in levels if lv not in first]))
        if result["hold"]:
            p50, p99 = await self.first_event_alone()
            top = result["hold"][max(result["hold"], key=int)]
            top["first_event_alone_p50_ms"], top["first_event_alone_p99_ms"] = p50, p99
            self.log(f"  first event, one stream at a time: p50 {p50} ms, p99 {p99} ms")
        await self.restart_server()
        await self.open_payment_streams()
        await self.settle(quiet=0.2, timeout=10)
        result["payments"] = await self.payments(
            self.scale.payment_rate, self.scale.payment_seconds
        )
        result["sweep"] = await self.sweep()
        result["storm"] = await self.storm()
        result["publish_errors"] = sum(self.publish_errors.values())
        result["publish_error_kinds"] = dict(self.publish_errors)
        self.pool.close(self.pool.streams)
        self.http.close()
        await asyncio.sleep(0.3)
        return result
