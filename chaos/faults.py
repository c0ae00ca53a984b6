"""The faults, drawn at random over the run, and the timeline of what happened when.

Every kind is drawn at least once (a shuffled deck, then random draws), at random moments
in the first 85 % of the run; they overlap freely (a partition lasts 20 s while other faults
go on). Each is undone by its own action (a restart, the end of the partition).
"""

import asyncio
import os
import signal
import time

KINDS = (
    "kill_worker",
    "restart_redis",
    "restart_postgres",
    "reload_nginx",
    "drop_streams",
    "partition_redis",
)
PARTITION_SECONDS = 20.0
DROP_FRACTION = 0.05
LISTENER_LOST = "Redis listener lost its connection"  # qrevents' warning (redis_broker.py)


class Timeline:
    """What happened, when (seconds since the load started)."""

    def __init__(self):
        self.start = time.monotonic()
        self.entries = []  # (seconds, kind, detail)

    def note(self, kind, detail):
        self.entries.append((time.monotonic() - self.start, kind, detail))


def schedule(seconds, rng, every=10.0, kinds=KINDS):
    """``[(at seconds, kind)]``: one fault every ``every`` s on average, each kind once."""
    count = max(len(kinds), round(seconds / every))
    deck = list(kinds)
    rng.shuffle(deck)
    kinds = deck + [rng.choice(kinds) for _ in range(count - len(deck))]
    latest = max(1.0, seconds * 0.85)
    plan = []
    for kind in kinds:
        end = latest - PARTITION_SECONDS if kind == "partition_redis" else latest
        plan.append((rng.uniform(min(2.0, end), max(end, 2.0)), kind))
    return sorted(plan)


class Faults:
    """The fault actions against one run's services."""

    def __init__(self, run, rng, timeline):
        self.run = run  # a chaos.__main__.Run: hosts, servers, postgres, redis, nginx, fleet
        self.rng = rng
        self.timeline = timeline
        self.partitioned = set()  # host names cut from Redis now

    async def play(self, plan):
        tasks = []
        for at, kind in plan:
            delay = self.timeline.start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(self._guarded(kind)))
        await asyncio.gather(*tasks)

    async def _guarded(self, kind):
        try:
            await getattr(self, kind)()
        except Exception as exc:  # a fault that could not be applied is reported, not fatal
            self.timeline.note(kind, f"could not be applied: {exc!r}")

    async def kill_worker(self):
        server = self.rng.choice(self.run.servers)
        pids = server.worker_pids()
        if not pids:
            self.timeline.note("kill_worker", f"host {server.host.name}: no worker running")
            return
        pid = self.rng.choice(pids)
        os.kill(pid, signal.SIGKILL)
        self.timeline.note("kill_worker", f"SIGKILL worker {pid} of host {server.host.name}")

    async def restart_redis(self):
        down = round(self.rng.uniform(0.5, 3.0), 1)
        self.timeline.note("restart_redis", f"stopped (SIGKILL), down {down} s")
        await asyncio.to_thread(self.run.redis.stop, signal.SIGKILL)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.run.redis.start)
        self.timeline.note("restart_redis", "answering again")

    async def restart_postgres(self):
        mode = self.rng.choice(("fast", "immediate"))
        self.timeline.note("restart_postgres", f"pg_ctl restart -m {mode}")
        await asyncio.to_thread(self.run.postgres.restart, mode)
        self.timeline.note("restart_postgres", "accepting connections again")

    async def reload_nginx(self):
        self.run.nginx.reload()
        self.timeline.note("reload_nginx", "SIGHUP to the master")

    async def drop_streams(self):
        dropped = self.run.fleet.drop(DROP_FRACTION, self.rng)
        self.timeline.note("drop_streams", f"{dropped} stream connections reset (RST)")

    async def partition_redis(self):
        free = [s for s in self.run.servers if s.host.name not in self.partitioned]
        if not free:
            self.timeline.note("partition_redis", "every host is already cut off: skipped")
            return
        server = self.rng.choice(free)
        host = server.host
        self.partitioned.add(host.name)
        port = self.run.redis.port
        log_before = len(server.log())
        await asyncio.to_thread(host.cut_from, port)
        self.timeline.note(
            "partition_redis", f"host {host.name} cut from Redis, packets dropped both ways"
        )
        try:
            await asyncio.sleep(PARTITION_SECONDS)
        finally:
            await asyncio.to_thread(host.heal_from, port)
            self.partitioned.discard(host.name)
            # Did its workers notice? A hung pub/sub connection is not a closed one.
            noticed = server.log()[log_before:].count(LISTENER_LOST)
            self.timeline.note(
                "partition_redis",
                f"host {host.name} reaches Redis again; its listeners noticed the partition "
                f"{noticed} time(s)",
            )
            self.run.partitions.append((host.name, noticed))
