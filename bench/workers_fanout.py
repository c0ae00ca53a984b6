"""Four workers, events for every account: what each worker receives from Redis, and the CPU
it spends on accounts it does not serve.

Four single-worker qrevents servers (the four workers) and a fifth that takes the payments
(the writer) share one PostgreSQL database and one Redis prefix. Each account has one
stream, on worker ``account index % 4``. Two phases of open-loop bank payments:

- ``all``: payments over every account (each payment commits 3 events);
- ``one worker's``: payments only to accounts of worker 0, at a quarter of the rate: workers
  1-3 serve none of them, so whatever they receive and the CPU they spend above their idle
  baseline is spent on accounts they do not serve.

Per worker: messages received from Redis (the bytes its sockets to Redis received, read
from the kernel with ``ss``, over the mean message size, measured by the bench's own
``PSUBSCRIBE`` to the prefix), the messages of accounts it serves (the payments to them),
and its CPU. ``--baseline DIR`` runs the same against another checkout's code (an earlier
release), side by side.
"""

import asyncio
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import redis

from . import servers
from .client import HttpClient, StreamPool, open_loop
from .servers import QreventsServer, cpu_seconds

WORKERS = 4


def redis_bytes_received(pids, redis_port):
    """Bytes the processes' established TCP connections to Redis received so far."""
    out = subprocess.run(
        ["ss", "-tinpH", "state", "established", f"( dport = :{redis_port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total, owner = 0, None
    for line in out.splitlines():
        found = re.search(r"pid=(\d+)", line)
        if found:
            owner = int(found.group(1))
            continue
        got = re.search(r"bytes_received:(\d+)", line)
        if got and owner in pids:
            total += int(got.group(1))
    return total


class BusTap:
    """Counts the messages and bytes published under the prefix (a pattern subscription)."""

    def __init__(self, url, prefix):
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(f"{prefix}*")
        self.messages = self.bytes = 0

    def drain(self):
        while (message := self.pubsub.get_message(timeout=0.01)) is not None:
            self.messages += 1
            self.bytes += len(message["data"])

    def close(self):
        self.pubsub.close()
        self.client.close()


async def run(code, scale, database_url, redis_url, workdir, log):
    """The scenario against the qrevents code in ``code``; a dict of per-worker figures."""
    root, servers.ROOT = servers.ROOT, Path(code)  # Server.start runs gunicorn there
    prefix = None
    nodes = []
    for n in range(WORKERS + 1):
        node = QreventsServer(workdir / f"w{n}", f"w{n}", database_url, redis_url, workers=1)
        if prefix is None:
            prefix = node.prefix
        node.prefix = prefix
        nodes.append(node)
    writer, workers = nodes[0], nodes[1:]
    tap = None
    try:
        for node in nodes:
            node.start()
        http = HttpClient(writer.host, writer.port, max_connections=64)
        channels = await writer.setup(http, scale["accounts"])
        pools = []
        for k, node in enumerate(workers):
            pool = StreamPool(node.host, node.port)
            mine = [c for i, c in enumerate(channels) if i % WORKERS == k]
            await pool.open([(0, node.stream_request(c)) for c in mine], 500, 32)
            pools.append(pool)
        await asyncio.sleep(4)  # subscriptions confirmed, heartbeats settled
        tap = BusTap(redis_url, prefix)
        port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        pids = [set(node.pids()) for node in workers]

        async def phase(name, accounts, rate):
            tap.drain()
            tap.messages = tap.bytes = 0
            before = [(cpu_seconds(p), redis_bytes_received(p, port)) for p in pids]
            paid = [0] * WORKERS
            byte_rates.clear()
            statuses = Counter()
            started = time.monotonic()

            def make(index, due):
                account = accounts[index % len(accounts)]
                return writer.publish_request(channels[account], f"m{index}", "payment")

            def on_result(index, status):
                statuses[status] += 1
                if 200 <= status < 300:
                    paid[accounts[index % len(accounts)] % WORKERS] += 1

            if rate:
                await open_loop(http, make, rate, scale["seconds"], on_result, 2 * rate)
            else:
                await asyncio.sleep(scale["seconds"])
            await asyncio.sleep(0.5)  # the last messages arrive
            tap.drain()
            wall = time.monotonic() - started
            size = tap.bytes / tap.messages if tap.messages else None
            rows = []
            for k, p in enumerate(pids):
                # Replies to the worker's own commands (heartbeat, leases) as in the idle phase.
                quiet = idle_bytes[k] * wall if idle_bytes else 0
                cpu, got = (
                    a - b
                    for a, b in zip(
                        (cpu_seconds(p), redis_bytes_received(p, port)), before[k], strict=True
                    )
                )
                byte_rates.append(got / wall)
                received = round(max(0, got - quiet) / size) if size else 0
                rows.append(
                    {
                        "worker": k,
                        "received_per_s": round(received / wall, 1),
                        "served_per_s": round(paid[k] / wall, 1),
                        "cpu_ms_per_s": round(1000 * cpu / wall, 1),
                    }
                )
            result = {
                "phase": name,
                "published_per_s": round(tap.messages / wall, 1),
                "answers": dict(statuses),
                "workers": rows,
            }
            log(f"  {name}: {result}")
            return result

        byte_rates, idle_bytes = [], None
        everyone = list(range(len(channels)))
        worker0 = [a for a in everyone if a % WORKERS == 0]
        idle = await phase("idle", [], 0)
        idle_bytes = list(byte_rates)
        spread = await phase("all", everyone, scale["payment_rate"])
        one = await phase("one worker's", worker0, max(1, scale["payment_rate"] // WORKERS))
        unserved = []
        for k in range(1, WORKERS):
            extra = one["workers"][k]["cpu_ms_per_s"] - idle["workers"][k]["cpu_ms_per_s"]
            unserved.append(
                {
                    "worker": k,
                    "received_per_s": one["workers"][k]["received_per_s"],
                    "cpu_ms_per_s_on_unserved": round(extra, 1),
                }
            )
        for pool in pools:
            pool.close(pool.streams)
        http.close()
        return {"phases": [idle, spread, one], "unserved": unserved}
    finally:
        if tap is not None:
            tap.close()
        for node in nodes:
            node.stop()
        servers.ROOT = root


def markdown(results):
    """One table: per worker, its messages and CPU, for each code run (``{label: result}``)."""
    labels = list(results)
    lines = [
        "| phase | worker | "
        + " | ".join(
            f"{label}: received/s | {label}: of its accounts/s | {label}: CPU ms/s"
            for label in labels
        )
        + " |",
        "|---|---|" + "---|" * (3 * len(labels)),
    ]
    first = results[labels[0]]
    for p, phase in enumerate(first["phases"]):
        for k in range(WORKERS):
            cells = []
            for label in labels:
                row = results[label]["phases"][p]["workers"][k]
                cells += [row["received_per_s"], row["served_per_s"], row["cpu_ms_per_s"]]
            lines.append(f"| {phase['phase']} | {k} | " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    lines.append(
        '| CPU on accounts not served (phase "one worker\'s", workers 1-3, above idle) | '
        + " | ".join(labels)
        + " |"
    )
    lines.append("|---|" + "---|" * len(labels))
    for i in range(WORKERS - 1):
        cells = [
            f"{results[label]['unserved'][i]['received_per_s']} msg/s, "
            f"{results[label]['unserved'][i]['cpu_ms_per_s_on_unserved']} ms/s"
            for label in labels
        ]
        lines.append(f"| worker {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
