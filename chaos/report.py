"""The run's report: its set-up, the fault timeline, the figures and every violation."""

from collections import Counter


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(args, timeline, fleet, payments, verdict, partitions):
    """Markdown: readable in a terminal, pasted as is into BENCHMARKS.md."""
    lines = [
        f"chaos run: {args.seconds:g} s, random draws from {args.random}; "
        f"{len(fleet.streams)} streams over "
        f"{args.accounts} accounts, payments at {args.rate:g}/s; 2 hosts x 2 gevent workers, "
        "PostgreSQL, Redis, nginx (deploy/nginx.conf)",
        "",
        "| t (s) | fault | what happened |",
        "|---:|---|---|",
    ]
    lines += [f"| {at:6.1f} | {kind} | {detail} |" for at, kind, detail in timeline.entries]
    kinds = Counter(kind for _, kind, detail in timeline.entries if _is_start(kind, detail))
    closed = Counter()
    refusals = Counter()
    failures = Counter()
    for stream in fleet.streams:
        closed.update(stream.closed_reasons)
        refusals.update(stream.refusals)
        failures.update(stream.connect_failures)
    acked = sum(len(a) for a in payments.acknowledged.values())
    paid = sum(len(p) for p in payments.paid.values())
    latencies = payments.ack_latencies
    figures = [
        ("faults", ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))),
        ("payments started", f"{payments.started} ({payments.started / args.seconds:.0f}/s)"),
        ("payments not started: the servers could not keep up", payments.skipped),
        ("paid at the bank (answered)", paid),
        ("bank calls without an answer", dict(payments.bank_failures) or 0),
        ("notifications acknowledged", acked),
        ("notifications never acknowledged (10 attempts)", len(payments.given_up)),
        ("notification attempts by answer", dict(payments.notify_answers)),
        (
            "acknowledgement after the first attempt (p50 / p99 / max)",
            f"{percentile(latencies, 0.5) * 1000:.0f} ms / "
            f"{percentile(latencies, 0.99) * 1000:.0f} ms / "
            f"{max(latencies, default=float('nan')) * 1000:.0f} ms",
        ),
        ("durable events delivered to streams", sum(len(s.ids) for s in fleet.streams)),
        ("stream connections (first ones included)", sum(s.connections for s in fleet.streams)),
        ("resumed with Last-Event-ID", sum(s.resumed for s in fleet.streams)),
        ("events replayed on resumption", sum(s.replayed for s in fleet.streams)),
        ("streams ended by", dict(closed) or 0),
        ("stream requests refused (non-200)", dict(refusals) or 0),
        ("stream connects that failed (retried)", dict(failures) or 0),
        (
            "partitions noticed by the partitioned host's Redis listener",
            ", ".join(f"host {h}: {n} warning(s)" for h, n in partitions) or "none run",
        ),
        *verdict.figures.items(),
        ("violations", len(verdict.violations)),
    ]
    lines += ["", "| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in figures]
    if verdict.violations:
        lines += ["", "Violations (first 40):", ""]
        lines += [f"- {text}" for text in verdict.violations[:40]]
    lines += ["", "PASS: nothing lost, nothing twice" if not verdict.violations else "FAIL"]
    return "\n".join(lines)


def _is_start(kind, detail):
    """The timeline line that opens a fault (restarts and partitions note their end too)."""
    return not (
        detail.startswith("answering again")
        or detail.startswith("accepting connections again")
        or "reaches Redis again" in detail
        or kind == "load"
    )
