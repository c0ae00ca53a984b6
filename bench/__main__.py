"""``python -m bench``: every scenario against the yardsticks, flask-sse and qrevents, in one run.

The servers run pinned to core 0, this process (the load generator) to core 1. Each target
is started afresh for each repetition; the median of the repetitions is reported. Writes
``bench/results.json`` and prints a Markdown table.
"""

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from . import report, workers_fanout
from .client import HttpClient
from .scenarios import FULL, QUICK, Repetition
from .servers import (
    CLIENT_CPU,
    ROOT,
    FlaskSseServer,
    LimitServer,
    NchanServer,
    QreventsServer,
    SseStarletteServer,
    nchan_missing,
)

TARGETS = (
    "limit",
    "nchan",
    "sse-starlette",
    "flask-sse",
    "qrevents-sqlite-1w",
    "qrevents-pg-redis-2w",
    "qrevents-4w-fanout",
)
# The four-worker fan-out (bench/workers_fanout.py): accounts, payments/s (3 events each),
# seconds per phase.
WORKERS_FANOUT = {
    "quick": {"accounts": 100, "payment_rate": 60, "seconds": 3},
    "full": {"accounts": 1000, "payment_rate": 667, "seconds": 5},
}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale, one repetition")
    parser.add_argument("--reps", type=int, help="repetitions per target (default 3, quick 1)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--flask-sse-redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument(
        "--flask-sse-max-streams",
        type=int,
        default=5000,
        help="each flask-sse stream holds a Redis connection: stay well under maxclients",
    )
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="qrevents-4w-fanout: also run it against the code in DIR (an earlier release)",
    )
    parser.add_argument("--table", metavar="RESULTS_JSON", help="print the tables of a past run")
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the servers' logs (JSON lines, tracebacks) and print where",
    )
    return parser.parse_args(argv)


def redis_broker_ready():
    """Whether the Redis broker (multi-worker fan-out) exists in this checkout."""
    return (ROOT / "qrevents" / "redis_broker.py").exists()


def new_postgres_database(base):
    import psycopg2

    name = "qrevents_bench_" + uuid.uuid4().hex[:10]
    admin = psycopg2.connect(base)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return base.rsplit("/", 1)[0] + "/" + name, name


def drop_postgres_database(base, name):
    import psycopg2

    admin = psycopg2.connect(base)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def log(message):
    print(message, file=sys.stderr, flush=True)


async def run_target(server, scale, reps):
    """Every repetition of the scenarios against one target; set-up once, server fresh each."""
    channels, results = None, []
    for rep in range(reps):
        log(f"{server.name}: repetition {rep + 1}/{reps}")
        server.start()
        try:
            if channels is None:
                http = HttpClient(server.host, server.port, max_connections=32)
                started = time.monotonic()
                channels = await server.setup(http, scale.accounts)
                http.close()
                log(f"  set-up of {len(channels)} accounts: {time.monotonic() - started:.1f}s")
            results.append(await Repetition(server, channels, scale, log).run())
        finally:
            server.stop()
    return results


async def run_workers_fanout(args, workdir):
    """bench/workers_fanout.py for this checkout (and ``--baseline``): its table, as a note."""
    scale = WORKERS_FANOUT["quick" if args.quick else "full"]
    codes = {"this": ROOT}
    if args.baseline:
        codes["baseline"] = Path(args.baseline).resolve()
    results = {}
    for label, code in codes.items():
        url, db = new_postgres_database(args.postgres_url)
        try:
            log(f"qrevents-4w-fanout ({label}: {code})")
            results[label] = await workers_fanout.run(
                code, scale, url, args.redis_url, workdir / label, log
            )
        except RuntimeError as exc:  # a server that would not start or answer: say so
            log(f"qrevents-4w-fanout ({label}) failed: {exc}")
            return f"failed on {label}: {str(exc)[:300]}"
        finally:
            drop_postgres_database(args.postgres_url, db)
    return "\n\n" + workers_fanout.markdown(results)


def machine_notes():
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in load],
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


async def main_async(args):
    scale = QUICK if args.quick else FULL
    reps = args.reps or (1 if args.quick else 3)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="qrevents-bench-"))
    summary, raw, notes, document = {}, {}, {}, None
    started = datetime.now(UTC)
    machine = machine_notes()
    for name in names:
        cleanup = None
        if name == "limit":
            server = LimitServer(workdir / name)
        elif name == "nchan":
            if nchan_missing():
                notes[name] = f"skipped: {nchan_missing()}"
                log(notes[name])
                continue
            server = NchanServer(workdir / name)
        elif name == "sse-starlette":
            server = SseStarletteServer(workdir / name)
        elif name == "flask-sse":
            server = FlaskSseServer(
                workdir / name, args.flask_sse_redis_url, args.flask_sse_max_streams
            )
        elif name == "qrevents-sqlite-1w":
            server = QreventsServer(workdir / name, name)
        elif name == "qrevents-4w-fanout":
            notes[name] = await run_workers_fanout(args, workdir / name)
            continue
        elif name == "qrevents-pg-redis-2w":
            if not redis_broker_ready():
                notes[name] = "skipped: qrevents/redis_broker.py is not in this checkout"
                log(notes[name])
                continue
            url, db = new_postgres_database(args.postgres_url)
            server = QreventsServer(workdir / name, name, url, args.redis_url, workers=2)
            cleanup = (args.postgres_url, db)
        else:
            raise SystemExit(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
        try:
            raw[name] = await run_target(server, scale, reps)
            summary[name] = report.median_of(raw[name])
        except Exception as exc:  # one target failing must not lose the others' numbers
            notes[name] = f"failed: {exc!r}"
            log(f"{name} failed: {exc!r}")
        finally:
            if cleanup:
                drop_postgres_database(*cleanup)
        # Written after every target: a run cut short keeps what it measured.
        document = {
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "scale": "quick" if args.quick else "full",
            "repetitions": reps,
            "machine": machine,
            "notes": notes,
            "median": summary,
            "table": report.table(summary, list(summary)),
            "targets": [
                {"target": target, "measured": shown, "holds": holds}
                for target, shown, holds in report.verdicts(summary)
            ],
            "runs": raw,
        }
        Path(args.out).write_text(json.dumps(document, indent=1))
    if args.keep_logs:
        log(f"server logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print_tables(summary, [n for n in names if n in summary], notes)
    return document


def print_tables(summary, order, notes):
    print(report.markdown(summary, order))
    print()
    print(report.verdict_markdown(summary))
    for note in report.client_bound_notes(summary):
        print(f"\n{note}")
    for name, note in notes.items():
        print(f"\n{name}: {note}")


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if args.table:
        document = json.loads(Path(args.table).read_text())
        print_tables(document["median"], list(document["median"]), document["notes"])
        return
    os.sched_setaffinity(0, {CLIENT_CPU})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.run(main_async(args))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
