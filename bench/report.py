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


def ratio(value, limit):
    if value is None or not limit:
        return ""
    return f" ({value / limit:.1f}×)"


def rows(summary, order):
    """``[(scenario, measure, {target: text})]`` for the targets in ``order``."""
    out = []

    def add(scenario, measure, pick, digits=2, with_ratio=False):
        limit = pick(summary.get("limit")) if "limit" in summary else None
        cells = {}
        for name in order:
            value = pick(summary.get(name))
            text = fmt(value, digits)
            if with_ratio and name != "limit":
                text += ratio(value, limit)
            cells[name] = text
        out.append((scenario, measure, cells))

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
        add(scenario, "streams held", get("hold", level, "held"), 0)
        add(scenario, "RSS per stream, KB", get("hold", level, "rss_per_stream_kb"), 1, True)
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
    add(scenario, "streams (N)", get("fanout", "streams"), 0)
    add(scenario, "to last subscriber p50, ms", get("fanout", "to_last_p50_ms"), 1, True)
    add(scenario, "delivery latency p99, ms", get("fanout", "latency_p99_ms"), 1)
    add(scenario, "lost / duplicated", lambda r: _pair(r, "fanout"))
    scenario = "fan-out under saturation"
    add(scenario, "CPU per delivered event, µs", get("saturation", "cpu_per_delivery_us"), 1, True)
    add(scenario, "+ Redis CPU per delivery, µs", get("saturation", "redis_cpu_per_delivery_us"), 1)
    add(scenario, "deliveries/s", get("saturation", "deliveries_per_s"), 0)
    add(scenario, "lost / duplicated", lambda r: _pair(r, "saturation"))
    rate = next((r["payments"]["rate"] for r in summary.values() if r.get("payments")), "?")
    scenario = f"payments open loop @{rate}/s"
    add(scenario, "streams", get("payments", "streams"), 0)
    add(scenario, "→ subscriber p50, ms", get("payments", "latency_p50_ms"))
    add(scenario, "→ subscriber p99, ms", get("payments", "latency_p99_ms"))
    add(scenario, "→ subscriber max, ms", get("payments", "latency_max_ms"))
    add(scenario, "server CPU per payment, ms", get("payments", "cpu_per_payment_ms"), 3)
    add(scenario, "answered with an error (kinds in the JSON)", get("payments", "errors"), 0)
    add(scenario, "lost / duplicated", lambda r: _pair(r, "payments"))
    scenario = "payments rate sweep"
    add(scenario, "highest rate with p99 ≤ 50 ms, /s", get("sweep", "highest_rate_p99_50ms"), 0)
    for rate in (50, 100, 250):
        add(scenario, f"p50 / p99 at {rate}/s, ms", lambda r, rate=rate: _sweep_cell(r, rate))
    scenario = "reconnect storm (all streams dropped at once)"
    add(scenario, "streams", get("storm", "streams"), 0)
    add(scenario, "events missed while away", get("storm", "missed_events"), 0)
    add(scenario, "open at the end (why not: in the JSON)", get("storm", "open_after"), 0)
    add(scenario, "all connected (TCP + request), s", get("storm", "all_connected_s"))
    add(scenario, "all answered (connection event), s", get("storm", "all_reconnected_s"))
    add(scenario, "all resumed with replay, s", get("storm", "all_resumed_s"))
    add(scenario, "lost / duplicated", lambda r: _pair(r, "storm"))
    return out


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
    last = None
    for scenario, measure, cells in rows(summary, order):
        shown = scenario if scenario != last else ""
        last = scenario
        lines.append(f"| {shown} | {measure} | " + " | ".join(cells[n] for n in order) + " |")
    return "\n".join(lines)


def _at(result, *path):
    for key in path:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


def verdicts(summary, subject="qrevents-sqlite-1w", two_workers="qrevents-pg-redis-2w"):
    """The targets (BENCHMARKS.md) for ``subject``: ``[(target, measured, holds)]``."""
    ours, limit = summary.get(subject), summary.get("limit")
    peer = summary.get("flask-sse")
    if not ours:
        return []
    out = []

    def check(target, value, holds, unit=""):
        shown = "not measured" if value is None else f"{fmt(value)}{unit}"
        out.append((target, shown, None if value is None else holds))

    for level, row in ours.get("hold", {}).items():
        base = _at(limit, "hold", level, "rss_per_stream_kb")
        rss = row.get("rss_per_stream_kb")
        bound = min(15, 1.5 * base) if base else 15
        check(
            f"RSS per stream at {level} ≤ min(1.5× limit, 15 KB) = {fmt(bound)} KB",
            rss,
            rss is not None and rss <= bound,
            " KB",
        )
        cpu = row.get("cpu_per_new_stream_ms")
        check(f"CPU per new stream at {level} ≤ 0.5 ms", cpu, cpu is not None and cpu <= 0.5, " ms")
    for name, path, factor in (
        ("one event to N streams: to last subscriber p50", ("fanout", "to_last_p50_ms"), 1.5),
        ("CPU per delivered event under saturation", ("saturation", "cpu_per_delivery_us"), 1.5),
    ):
        value, base = _at(ours, *path), _at(limit, *path)
        ratio_value = None if value is None or not base else round(value / base, 2)
        check(
            f"{name} ≤ {factor}× limit",
            ratio_value,
            ratio_value is not None and ratio_value <= factor,
            "×",
        )
    p50, p99 = _at(ours, "payments", "latency_p50_ms"), _at(ours, "payments", "latency_p99_ms")
    rate = _at(ours, "payments", "rate")
    check(f"payment → subscriber p50 at {rate}/s ≤ 2 ms", p50, p50 is not None and p50 <= 2, " ms")
    check(
        f"payment → subscriber p99 at {rate}/s ≤ 10 ms", p99, p99 is not None and p99 <= 10, " ms"
    )
    best = _at(ours, "sweep", "highest_rate_p99_50ms")
    check(
        "highest payment rate with p99 ≤ 50 ms ≥ 1,000/s",
        best or 0,
        best is not None and best >= 1000,
        "/s",
    )
    if summary.get(two_workers):
        other = summary[two_workers]
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
        check(
            f"two workers (Redis + PostgreSQL): added p50 ≤ 1 ms (at {at}/s)",
            added,
            added is not None and added <= 1,
            " ms",
        )
        lost = sum(
            _at(other, phase, "lost") or 0
            for phase in ("fanout", "saturation", "payments", "storm")
        )
        check("two workers: lost events = 0", lost, lost == 0)
    resumed = _at(ours, "storm", "all_resumed_s")
    check(
        "reconnect storm: all resumed within 10 s",
        resumed,
        resumed is not None and resumed <= 10,
        " s",
    )
    lost = _at(ours, "storm", "lost")
    check("reconnect storm: zero lost", lost, lost == 0)
    if peer:
        for name, path, lower in (
            ("RSS per stream (largest common level)", None, True),
            ("CPU per delivered event", ("saturation", "cpu_per_delivery_us"), True),
            ("one event to N: to last p50", ("fanout", "to_last_p50_ms"), True),
            ("payment p99", ("payments", "latency_p99_ms"), True),
            ("storm: lost", ("storm", "lost"), True),
        ):
            if path is None:
                common = [lv for lv in ours.get("hold", {}) if lv in peer.get("hold", {})]
                if not common:
                    continue
                level = max(common, key=int)
                path = ("hold", level, "rss_per_stream_kb")
            a, b = _at(ours, *path), _at(peer, *path)
            if a is None or b is None:
                continue
            check(f"ahead of flask-sse: {name} ({fmt(b)} there)", a, a <= b if lower else a >= b)
    return out


def verdict_markdown(summary):
    lines = ["| target (qrevents, SQLite, one worker) | measured | holds |", "|---|---|---|"]
    for target, shown, holds in verdicts(summary):
        mark = "–" if holds is None else ("yes" if holds else "**no**")
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
