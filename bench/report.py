"""Medians over repetitions, and the table ``make bench`` prints and BENCHMARKS.md shows."""

import statistics

from .scenarios import CLIENT_BOUND


def _client_bound(phase):
    return isinstance(phase, dict) and (phase.get("client_cpu_pct") or 0) >= CLIENT_BOUND


def median_of(values):
    """Median of a list of like values: numbers by median, dicts key by key, else the first."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, bool):
        return statistics.median_low(sorted(present))
    if isinstance(first, int | float):
        return round(statistics.median(present), 4)
    if isinstance(first, dict):
        # A phase where the client was the bottleneck is discarded when a clean one exists.
        clean = [v for v in present if not _client_bound(v)]
        chosen = clean or present
        keys = [k for k in first if k != "rows"]
        merged = {k: median_of([v.get(k) for v in chosen]) for k in keys}
        if any(_client_bound(v) for v in present):
            merged["client_bound_runs"] = len(present) - len(clean)
        if "rows" in first:  # the sweep: one row per rate, each a median over the runs
            by_rate = {}
            for v in chosen:
                for row in v["rows"]:
                    by_rate.setdefault(row["rate"], []).append(row)
            merged["rows"] = [median_of(rows) for _, rows in sorted(by_rate.items())]
        return merged
    return first


def fmt(value, digits=2):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
    return str(value)


YARDSTICKS = (("limit", "L"), ("nchan", "N"))


def ratio_to(value, base):
    """``value / base`` rounded, or None when either is missing (or not a number)."""
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (value, base))
    if not numbers or not base:
        return None
    return round(value / base, 2)


def cell_text(name, cell, digits):
    """``17.2 (1.7× L, 1.9× N)``: the value, then its ratios to the limit and to nchan."""
    text = fmt(cell["value"], digits)
    parts = [
        f"{fmt(cell[f'to_{yardstick}'], 2)}× {letter}"
        for yardstick, letter in YARDSTICKS
        if yardstick != name and cell.get(f"to_{yardstick}") is not None
    ]
    return f"{text} ({', '.join(parts)})" if parts else text


def rows(summary, order):
    """``[(scenario, measure, digits, {target: cell})]`` for the targets in ``order``; a cell
    is ``{"value"}``, with ``to_limit`` and ``to_nchan`` for measures where a ratio means
    something (not counts)."""
    out = []

    def add(scenario, measure, pick, digits=2, with_ratio=True):
        bases = {name: pick(summary.get(name)) for name, _ in YARDSTICKS}
        cells = {}
        for name in order:
            value = pick(summary.get(name))
            cell = {"value": value}
            if with_ratio:
                for yardstick, _ in YARDSTICKS:
                    if yardstick != name:
                        cell[f"to_{yardstick}"] = ratio_to(value, bases[yardstick])
            cells[name] = cell
        out.append((scenario, measure, digits, cells))

    def count(scenario, measure, pick, digits=0):
        add(scenario, measure, pick, digits, with_ratio=False)

    def get(*path):
        def pick(result):
            for key in path:
                if not isinstance(result, dict):
                    return None
                result = result.get(key)
            return result

        return pick

    levels = []
    for result in summary.values():
        for level in result.get("hold", {}):
            if level not in levels:
                levels.append(level)
    for level in sorted(levels, key=int):
        scenario = f"hold {int(level):,} idle streams"
        count(scenario, "streams held", get("hold", level, "held"))
        add(scenario, "RSS per stream, KB", get("hold", level, "rss_per_stream_kb"), 1)
        add(scenario, "CPU per new stream, ms", get("hold", level, "cpu_per_new_stream_ms"), 3)
        add(
            scenario,
            "connect → first event p50 (ramp), ms",
            get("hold", level, "first_event_p50_ms"),
        )
    top = max(levels, key=int) if levels else None
    add(
        "new stream while the others idle",
        "connect → connection event p50, ms",
        get("hold", top, "first_event_alone_p50_ms"),
    )
    scenario = "one event to N streams of one account"
    count(scenario, "streams (N)", get("fanout", "streams"))
    add(scenario, "to last subscriber p50, ms", get("fanout", "to_last_p50_ms"), 1)
    add(scenario, "delivery latency p99, ms", get("fanout", "latency_p99_ms"), 1)
    count(scenario, "lost / duplicated", lambda r: _pair(r, "fanout"))
    scenario = "fan-out under saturation"
    add(scenario, "CPU per delivered event, µs", get("saturation", "cpu_per_delivery_us"), 1)
    count(
        scenario, "+ Redis CPU per delivery, µs", get("saturation", "redis_cpu_per_delivery_us"), 1
    )
    add(scenario, "deliveries/s", get("saturation", "deliveries_per_s"), 0)
    count(scenario, "lost / duplicated", lambda r: _pair(r, "saturation"))
    rate = next((r["payments"]["rate"] for r in summary.values() if r.get("payments")), "?")
    scenario = f"payments open loop @{rate}/s"
    count(scenario, "streams", get("payments", "streams"))
    add(scenario, "→ subscriber p50, ms", get("payments", "latency_p50_ms"))
    add(scenario, "→ subscriber p99, ms", get("payments", "latency_p99_ms"))
    add(scenario, "→ subscriber max, ms", get("payments", "latency_max_ms"))
    add(scenario, "server CPU per payment, ms", get("payments", "cpu_per_payment_ms"), 3)
    count(scenario, "answered with an error (kinds in the JSON)", get("payments", "errors"))
    count(scenario, "lost / duplicated", lambda r: _pair(r, "payments"))
    scenario = "payments rate sweep"
    add(scenario, "highest rate with p99 ≤ 50 ms, /s", get("sweep", "highest_rate_p99_50ms"), 0)
    for rate in _sweep_rates(summary)[:3]:
        count(scenario, f"p50 / p99 at {rate}/s, ms", lambda r, rate=rate: _sweep_cell(r, rate))
    scenario = "reconnect storm (all streams dropped at once)"
    count(scenario, "streams", get("storm", "streams"))
    count(scenario, "events missed while away", get("storm", "missed_events"))
    count(scenario, "open at the end (why not: in the JSON)", get("storm", "open_after"))
    add(scenario, "all connected (TCP + request), s", get("storm", "all_connected_s"))
    add(scenario, "all answered (connection event), s", get("storm", "all_reconnected_s"))
    add(scenario, "all resumed with replay, s", get("storm", "all_resumed_s"))
    count(scenario, "lost / duplicated", lambda r: _pair(r, "storm"))
    return out


def table(summary, order):
    """The rows as data, for results.json: every cell with its ratios."""
    return [
        {"scenario": scenario, "measure": measure, "cells": cells}
        for scenario, measure, _, cells in rows(summary, order)
    ]


def _sweep_rates(summary):
    rates = set()
    for result in summary.values():
        for row in _at(result, "sweep", "rows") or ():
            rates.add(row["rate"])
    return sorted(rates)


def sweep_row(result, rate):
    for row in _at(result, "sweep", "rows") or ():
        if row.get("rate") == rate:
            return row
    return None


def _sweep_cell(result, rate):
    row = sweep_row(result, rate)
    if row is None:
        return None
    return f"{fmt(row.get('latency_p50_ms'))} / {fmt(row.get('latency_p99_ms'))}"


def _pair(result, phase):
    if not result or not result.get(phase):
        return None
    data = result[phase]
    return f"{fmt(data.get('lost'), 0)} / {fmt(data.get('duplicates'), 0)}"


def markdown(summary, order):
    header = "| scenario | measure | " + " | ".join(order) + " |"
    lines = [header, "|" + "---|" * (len(order) + 2)]
    lines.append(
        "| | (× L: ratio to the limit, × N: to nchan) | " + " | ".join("" for _ in order) + " |"
    )
    last = None
    for scenario, measure, digits, cells in rows(summary, order):
        shown = scenario if scenario != last else ""
        last = scenario
        texts = [cell_text(n, cells[n], digits) for n in order]
        lines.append(f"| {shown} | {measure} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def _at(result, *path):
    for key in path:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


def verdicts(summary, subject="qrevents-sqlite-1w", two_workers="qrevents-pg-redis-2w"):
    """The targets for ``subject``: ``[(target, measured, holds)]``, the scale targets first (one
    worker, SQLite, against the limit and nchan), then the standing ones (BENCHMARKS.md)."""
    ours, limit, nchan = summary.get(subject), summary.get("limit"), summary.get("nchan")
    if not ours:
        return []
    other = summary.get(two_workers)
    out = []

    def check(target, value, holds, unit=""):
        shown = "not measured" if value is None else f"{fmt(value)}{unit}"
        out.append((target, shown, None if value is None else holds))

    for level, row in ours.get("hold", {}).items():
        base = _at(limit, "hold", level, "rss_per_stream_kb")
        rss = row.get("rss_per_stream_kb")
        bound = min(15, 1.5 * base) if base else 15
        check(
            f"RSS per stream at {int(level):,} ≤ 15 KB and ≤ 1.5× limit = {fmt(bound)} KB",
            rss,
            rss is not None and rss <= bound,
            " KB",
        )
        cpu = row.get("cpu_per_new_stream_ms")
        check(
            f"CPU per new stream at {int(level):,} ≤ 0.25 ms",
            cpu,
            cpu is not None and cpu <= 0.25,
            " ms",
        )
    streams, storm = _at(ours, "storm", "streams"), _at(ours, "storm", "all_resumed_s")
    check(
        f"reconnect storm of {fmt(streams)} streams (10k at full scale): all resumed ≤ 3 s",
        storm,
        storm is not None and storm <= 3,
        " s",
    )
    best = _at(ours, "sweep", "highest_rate_p99_50ms")
    check(
        "highest payment rate with p99 ≤ 50 ms ≥ 1,500/s",
        best or 0,
        best is not None and best >= 1500,
        "/s",
    )
    path = ("saturation", "cpu_per_delivery_us")
    times = ratio_to(_at(ours, *path), _at(nchan, *path))
    check("CPU per delivered event ≤ 3× nchan's", times, times is not None and times <= 3, "×")
    if other:
        for level, row in ours.get("hold", {}).items():
            one = row.get("first_event_p50_ms")
            two = _at(other, "hold", level, "first_event_p50_ms")
            added = None if one is None or two is None else round(two - one, 3)
            check(
                f"two workers: connection event during the ramp to {int(level):,} "
                "within 2 ms of one worker's",
                added,
                added is not None and added <= 2,
                " ms",
            )
        # Compared where neither is overloaded: the highest sweep rate both passed.
        both = [
            r["rate"]
            for r in _at(ours, "sweep", "rows") or ()
            if r.get("passed") and (sweep_row(other, r["rate"]) or {}).get("passed")
        ]
        added, at = None, max(both) if both else None
        if at is not None:
            mine, theirs = sweep_row(ours, at), sweep_row(other, at)
            added = round(theirs["latency_p50_ms"] - mine["latency_p50_ms"], 3)
        where = f"at {at}/s" if at else "no sweep rate both passed"
        check(
            f"two workers (Redis + PostgreSQL): added p50 ≤ 1 ms ({where})",
            added,
            added is not None and added <= 1,
            " ms",
        )
        lost = sum(
            _at(other, phase, "lost") or 0
            for phase in ("fanout", "saturation", "payments", "storm")
        )
        check("two workers: lost events = 0", lost, lost == 0)
    for name, path, factor in (
        ("one event to N streams: to last subscriber p50", ("fanout", "to_last_p50_ms"), 1.5),
        ("CPU per delivered event under saturation", ("saturation", "cpu_per_delivery_us"), 1.5),
    ):
        times = ratio_to(_at(ours, *path), _at(limit, *path))
        check(f"{name} ≤ {factor}× limit", times, times is not None and times <= factor, "×")
    p50, p99 = _at(ours, "payments", "latency_p50_ms"), _at(ours, "payments", "latency_p99_ms")
    rate = _at(ours, "payments", "rate")
    check(f"payment → subscriber p50 at {rate}/s ≤ 2 ms", p50, p50 is not None and p50 <= 2, " ms")
    check(
        f"payment → subscriber p99 at {rate}/s ≤ 10 ms", p99, p99 is not None and p99 <= 10, " ms"
    )
    lost = _at(ours, "storm", "lost")
    check("reconnect storm: zero lost", lost, lost == 0)
    for peer_name in ("sse-starlette", "flask-sse"):
        peer = summary.get(peer_name)
        if not peer:
            continue
        for name, path in (
            ("RSS per stream (largest common level)", None),
            ("CPU per delivered event", ("saturation", "cpu_per_delivery_us")),
            ("one event to N: to last p50", ("fanout", "to_last_p50_ms")),
            ("payment p99", ("payments", "latency_p99_ms")),
            ("storm: lost", ("storm", "lost")),
        ):
            if path is None:
                common = [lv for lv in ours.get("hold", {}) if lv in peer.get("hold", {})]
                if not common:
                    continue
                path = ("hold", max(common, key=int), "rss_per_stream_kb")
            a, b = _at(ours, *path), _at(peer, *path)
            if a is None or b is None:
                continue
            check(f"ahead of {peer_name}: {name} ({fmt(b)} there)", a, a <= b)
    return out


def verdict_markdown(summary):
    lines = ["| target (qrevents, SQLite, one worker) | measured | pass/miss |", "|---|---|---|"]
    for target, shown, holds in verdicts(summary):
        mark = "–" if holds is None else ("pass" if holds else "**miss**")
        lines.append(f"| {target} | {shown} | {mark} |")
    return "\n".join(lines)


def client_bound_notes(summary):
    """Where the load generator's own core was the bottleneck (those runs were discarded)."""
    notes = []

    def walk(name, path, node):
        if not isinstance(node, dict):
            return
        if node.get("client_bound_runs"):
            notes.append(
                f"{name} {'/'.join(path)}: {node['client_bound_runs']} run(s) had the client "
                f"at ≥ {CLIENT_BOUND:.0f}% of its core and were left out of the median"
                + (
                    " (all were: this median is client-bound)"
                    if node.get("client_cpu_pct", 0) >= CLIENT_BOUND
                    else ""
                )
            )
        for key, value in node.items():
            walk(name, path + [key], value)

    for name, result in summary.items():
        walk(name, [], result)
    return notes
