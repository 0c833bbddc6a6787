#!/usr/bin/env python3
"""Turn bench/results/{arena,node}.jsonl (and run.json) into the comparison in
docs/benchmarks.md (between the comparison markers): a table of every measure with
Arena's advantage as a ratio against Node in the same run, a table of the capacity
curve, a bar chart of the ratios and line charts of the curve (hand-written SVG).

Usage: report.py RESULTS_DIR DOC COMPARISON_SVG [CAPACITY_SVG]"""
import json
import math
import os
import sys
from datetime import datetime, timezone

ARENA_COLOR, NODE_COLOR = "#3b7dd8", "#e0842b"


def load(path):
    """Every JSON line of a results file, in order."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def pick(rows, scenario, label=None):
    """The last row of a scenario (with that label, when rows carry labels)."""
    found = [r for r in rows if r.get("scenario") == scenario
             and (label is None or r.get("label", label) == label)]
    return found[-1] if found else {}


def curve(rows):
    """The capacity curve's rows, by room count."""
    return {r["rooms"]: r for r in rows if r.get("scenario") == "broadcast" and r.get("label") == "capacity"}


def get(d, *path):
    for key in path:
        if not isinstance(d, dict) or d.get(key) is None:
            return None
        d = d[key]
    return d


def metrics(rows):
    c, v = pick(rows, "connect", "idle-10k"), pick(rows, "revoke", "logout")
    f, ch = pick(rows, "broadcast", "fanout"), pick(rows, "churn", "churn")
    open_ = c.get("open")
    rooms, players, chat = f.get("rooms"), f.get("players"), f.get("chat_rate")
    fan = f"Fan-out {rooms}×{players}" if f else "Fan-out"
    visits = None if not ch else ch.get("visits", 0) / max(ch.get("seconds", 1), 1)
    growth = None if not ch else (ch.get("server_rss_after", 0) - ch.get("server_rss_before", 0)) / 1e6
    return [
        # (label, value, unit, higher is better; None: shown without a ratio)
        (f"Memory per idle socket ({open_ or 0:,} sockets)", c.get("server_bytes_per_socket"), "bytes", False),
        ("… the second half of them alone (marginal)", c.get("server_bytes_per_socket_second_half"), "bytes", False),
        ("Server CPU per handshake (upgrade + token + welcome)", c.get("server_cpu_us_per_handshake"), "µs", False),
        ("… of which user", c.get("server_user_cpu_us_per_handshake"), "µs", False),
        ("… of which system (kernel)", c.get("server_system_cpu_us_per_handshake"), "µs", False),
        (f"Handshakes per second ({open_ or 0:,} sockets)", c.get("handshakes_per_sec"), "/s", True),
        ("Handshake latency p99", get(c, "latency_ms", "p99"), "ms", False),
        ("Logout with 10 sockets: request p99", get(v, "logout_request_ms", "p99"), "ms", False),
        ("Logout → all 10 sockets closed, p99", get(v, "all_closed_ms", "p99"), "ms", False),
        ("Sockets left open after logout", v.get("left_open"), "", False),
        (f"{fan}: frames delivered per second of server CPU", f.get("frames_per_cpu_sec"), "/CPU-s", True),
        (f"{fan}: server CPU per frame, user", f.get("user_us_per_frame"), "µs", False),
        (f"{fan}: server CPU per frame, system", f.get("system_us_per_frame"), "µs", False),
        (f"{fan}: state frames per socket per second (of {f.get('tick_hz', 20)})",
         get(f, "states_per_socket_per_sec", "mean"), "/s", True),
        (f"{fan}: frames delivered per second (chat {chat}/s + state)", f.get("delivered_per_sec"), "/s", True),
        (f"{fan}: chat latency p99", get(f, "chat_latency_ms", "p99"), "ms", False),
        # Cores used is no ratio: at the same load fewer is better, but a server starved of
        # CPU (or one thread only) also uses fewer.
        (f"{fan}: server cores used", f.get("server_cores"), "cores", None),
        (f"{fan}: load client cores; other load on the machine", None if not f else
         f"{fmt(f.get('client_cores'))}; {fmt(f.get('other_cores'))}", "cores", None),
        ("Churn: visits per second", visits, "/s", True),
        ("Churn: server RSS growth over the run", growth, "MB", False),
    ]


def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, str):
        return f"{v} {unit}".strip()
    if isinstance(v, int) or abs(v) >= 100:
        text = f"{v:,.0f}"
    elif abs(v) >= 10:
        text = f"{v:.1f}"
    else:
        text = f"{v:.2f}"
    return f"{text} {unit}".strip()


def ratio(a, n, higher_better):
    if higher_better is None or not all(isinstance(x, (int, float)) for x in (a, n)) or a <= 0 or n <= 0:
        return None
    return (a / n) if higher_better else (n / a)


def main(results, doc, svg, capacity_svg=None):
    arena, node = load(f"{results}/arena.jsonl"), load(f"{results}/node.jsonl")
    run = {}
    if os.path.exists(f"{results}/run.json"):
        with open(f"{results}/run.json") as f:
            run = json.load(f)
    rows = []
    for (label, a, unit, hb), (_, n, _, _) in zip(metrics(arena), metrics(node)):
        # A ratio against (almost) nothing says nothing: growth under 1 MB is "flat";
        # a count of sockets left open is a check, not a speed.
        flat = ("growth" in label and min(a or 0, n or 0) < 1) or "left open" in label
        rows.append((label, a, n, unit, None if flat else ratio(a, n, hb)))
    when = run.get("date") or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    took = ""
    if run.get("bench_secs"):
        waited = run.get("quiet_wait_secs")
        waited = "" if waited is None else f", of which {waited / 60:.1f} min waiting for an idle machine"
        took = (f" It took {run['bench_secs'] / 60:.1f} min{waited} (Arena {fmt_secs(run.get('arena_secs'))}, "
                f"Node {fmt_secs(run.get('node_secs'))}); load average before {run.get('loadavg_before')}, "
                f"after {run.get('loadavg_after')}.")
    lines = [
        "<!-- comparison:start (written by bench/report.py) -->",
        f"Run of {when.replace('T', ' ')} (commit {run.get('commit', '?')}): `bench/run.sh` on this machine "
        f"({run.get('cpus', 2)} cores), release build, the load client on the same cores.{took}",
    ]
    if run.get("failures"):
        lines += ["", "**Failed steps in this run:** " + ", ".join(run["failures"]) + "."]
    lines += [
        "",
        "| measure | Arena | Node.js (ws + jsonwebtoken) | Arena's advantage |",
        "|---|---|---|---|",
    ]
    for label, a, n, unit, r in rows:
        adv = "–" if r is None else f"{r:.2f}×"
        lines.append(f"| {label} | {fmt(a, unit)} | {fmt(n, unit)} | {adv} |")
    lines += ["", "![Arena vs Node.js](benchmark-comparison.svg)", ""]
    lines += capacity_table(curve(arena), curve(node))
    if capacity_svg:
        lines += ["", f"![Capacity curve, Arena vs Node.js]({os.path.basename(capacity_svg)})"]
    lines += ["", "<!-- comparison:end -->"]
    block = "\n".join(lines)
    text = open(doc).read()
    start, end = "<!-- comparison:start", "<!-- comparison:end -->"
    if start in text and end in text:
        before = text[: text.index(start)]
        after = text[text.index(end) + len(end):]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n## Arena against Node.js\n\n" + block + "\n"
    open(doc, "w").write(text)
    write_svg(svg, [(l, r) for l, _, _, _, r in rows if r is not None])
    if capacity_svg:
        write_capacity_svg(capacity_svg, curve(arena), curve(node))


def fmt_secs(s):
    return "–" if s is None else f"{s / 60:.1f} min"


def capacity_table(ac, nc):
    points = sorted(set(ac) | set(nc))
    if not points:
        return []
    any_row = (ac.get(points[0]) or nc.get(points[0]))
    lines = [
        f"**Capacity curve**: rooms × {any_row.get('players')} players, each chatting "
        f"{any_row.get('chat_rate')}/s and sending {any_row.get('input_rate', 20):.0f} inputs/s, "
        f"{any_row.get('seconds', 0):.0f} s measured per point. Arena / Node in each cell; "
        "state frames per socket per second as mean (slowest socket), where the tick rate is "
        f"{any_row.get('tick_hz', 20)}; cores = server CPU seconds / wall seconds (the machine has 2, "
        "shared with the load client, whose own share is a column; \"other load\" is the rest of the "
        "machine's busy time: other processes, and kernel work charged to no process).",
        "",
        "| rooms (sockets) | state frames / socket / s | chat latency p99 | chats delivered | server cores | frames per CPU-s | sockets closed early | load client cores | other load, cores |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        a, n = ac.get(p, {}), nc.get(p, {})

        def both(f):
            return f"{f(a)} / {f(n)}"

        def states(r):
            s = r.get("states_per_socket_per_sec")
            return "–" if not s else f"{s['mean']:.1f} ({s['min']:.1f})"

        def delivery(r):
            exp = r.get("chats_expected")
            return "–" if not exp else f"{100 * r.get('chats', 0) / exp:.0f}%"

        def closed(r):
            if not r:
                return "–"
            early = r.get("closed_early", 0) + r.get("join_errors", 0)
            codes = ",".join(f"{k}×{v}" for k, v in (r.get("close_codes") or {}).items())
            return f"{early}" + (f" ({codes})" if codes else "")

        sockets = (a or n).get("sockets")
        lines.append(
            f"| {p} ({sockets:,}) | {both(states)} | "
            f"{both(lambda r: fmt(get(r, 'chat_latency_ms', 'p99'), 'ms'))} | {both(delivery)} | "
            f"{both(lambda r: fmt(r.get('server_cores')))} | {both(lambda r: fmt(r.get('frames_per_cpu_sec')))} | "
            f"{both(closed)} | {both(lambda r: fmt(r.get('client_cores')))} | "
            f"{both(lambda r: fmt(r.get('other_cores')))} |")
    return lines


def write_svg(path, bars):
    """Bars on a log scale around 1× (equal): right of it Arena is ahead, left behind."""
    width, row_h, left, right = 900, 30, 430, 60
    height = 50 + row_h * len(bars) + 40
    span = max([abs(math.log10(r)) for _, r in bars] + [math.log10(2)])
    half = (width - left - right) / 2
    center = left + half

    def x(r):
        return center + math.log10(r) / span * half
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           '<text x="10" y="22" font-size="14" font-weight="bold">Arena\'s advantage over Node.js (ws + jsonwebtoken), same run; '
           'log scale, 1× = equal</text>']
    for k in range(-3, 4):
        r = 10 ** k
        for m in (1, 2, 5):
            t = r * m
            if abs(math.log10(t)) <= span * 1.0001:
                out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="36" y2="{height - 34}" stroke="#eee"/>')
                out.append(f'<text x="{x(t):.1f}" y="{height - 20}" text-anchor="middle" font-size="11">{t:g}×</text>')
    for i, (label, r) in enumerate(bars):
        y = 40 + i * row_h
        color = ARENA_COLOR if r >= 1 else "#d8573b"
        x0, x1 = sorted((center, x(r)))
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{esc(label)}</text>')
        out.append(f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(1, x1 - x0):.1f}" height="{row_h - 10}" fill="{color}"/>')
        tx, anchor = (x1 + 6, "start") if r >= 1 else (x0 - 6, "end")
        out.append(f'<text x="{tx:.1f}" y="{y + 16}" text-anchor="{anchor}">{r:.2f}×</text>')
    out.append(f'<line x1="{center:.1f}" x2="{center:.1f}" y1="36" y2="{height - 34}" stroke="#333" stroke-dasharray="4 3"/>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def nice_top(v):
    """A round axis maximum at or above v (its quarters are round too)."""
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    return next(m * e for m in (1, 2, 4, 5, 8, 10) if m * e >= v)


def write_capacity_svg(path, ac, nc):
    """Three panels side by side, x = rooms: state rate per socket, chat p99 (log),
    server cores. Arena blue, Node orange; the slowest socket dashed in the first."""
    points = sorted(set(ac) | set(nc))
    pw, ph, gap, top_m, left_m, bottom_m = 270, 210, 60, 70, 50, 50
    width = left_m + 3 * pw + 2 * gap + 20
    height = top_m + ph + bottom_m + 20
    any_row = (ac.get(points[0]) or nc.get(points[0])) if points else {}
    players, chat = any_row.get("players", 20), any_row.get("chat_rate", 5)
    tick = any_row.get("tick_hz", 20)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="10" y="22" font-size="14" font-weight="bold">Capacity curve: rooms of {players} players, '
           f'each chatting {chat}/s and sending 20 inputs/s, same 2-core machine as the load client</text>',
           f'<rect x="10" y="34" width="14" height="4" fill="{ARENA_COLOR}"/><text x="30" y="40">Arena</text>',
           f'<rect x="90" y="34" width="14" height="4" fill="{NODE_COLOR}"/><text x="110" y="40">Node.js (ws)</text>',
           f'<line x1="210" x2="232" y1="36" y2="36" stroke="#555" stroke-dasharray="4 3"/>'
           '<text x="238" y="40">slowest socket; grey: the tick rate</text>']
    if not points:
        out.append("</svg>")
        open(path, "w").write("\n".join(out))
        return
    xmax = max(points)

    def panel(i, title, values, log=False, limit=None, ymax=None):
        """values: list of (color, dashed, {rooms: y})."""
        x0 = left_m + i * (pw + gap)
        y0 = top_m
        ys = [y for _, _, d in values for y in d.values() if y is not None]
        if log:
            lo = min([y for y in ys if y > 0] + [1.0])
            hi = max(ys + [10.0])
            lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
            if hi_e == lo_e:
                hi_e += 1

            def sy(y):
                y = max(y, 10 ** lo_e)
                return y0 + ph - (math.log10(y) - lo_e) / (hi_e - lo_e) * ph
            ticks = [10 ** e for e in range(lo_e, hi_e + 1)]
        else:
            top = ymax or nice_top(max(ys + [limit or 0]) * 1.1)

            def sy(y):
                return y0 + ph - y / top * ph
            ticks = [top * k / 4 for k in range(5)]

        def sx(x):
            return x0 + x / xmax * pw
        out.append(f'<text x="{x0}" y="{y0 - 12}" font-weight="bold">{esc(title)}</text>')
        out.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
        for t in ticks:
            y = sy(t)
            out.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
            label = f"{t:g}" if not log else (f"{t:g}" if t >= 1 else f"{t:.2g}")
            out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{label}</text>')
        for p in points:
            x = sx(p)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + ph}" y2="{y0 + ph + 4}" stroke="#999"/>')
            out.append(f'<text x="{x:.1f}" y="{y0 + ph + 17}" text-anchor="middle" font-size="11">{p}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 34}" text-anchor="middle">rooms ({players} sockets each)</text>')
        if limit is not None:
            y = sy(limit)
            out.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555" stroke-dasharray="4 3"/>')
        for color, dashed, d in values:
            pts = [(sx(p), sy(d[p])) for p in points if d.get(p) is not None]
            if not pts:
                continue
            dash = ' stroke-dasharray="5 3"' if dashed else ""
            path_d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            out.append(f'<polyline points="{path_d}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
            if not dashed:
                for x, y in pts:
                    out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')

    def series(c, f):
        return {p: f(r) for p, r in c.items()}

    rate = lambda k: (lambda r: get(r, "states_per_socket_per_sec", k))
    panel(0, "state frames per socket per second", [
        (ARENA_COLOR, False, series(ac, rate("mean"))), (ARENA_COLOR, True, series(ac, rate("min"))),
        (NODE_COLOR, False, series(nc, rate("mean"))), (NODE_COLOR, True, series(nc, rate("min")))],
        limit=tick, ymax=tick * 1.2)
    panel(1, "chat latency p99, ms (log scale)", [
        (ARENA_COLOR, False, series(ac, lambda r: get(r, "chat_latency_ms", "p99"))),
        (NODE_COLOR, False, series(nc, lambda r: get(r, "chat_latency_ms", "p99")))], log=True)
    panel(2, "server CPU, cores", [
        (ARENA_COLOR, False, series(ac, lambda r: r.get("server_cores"))),
        (NODE_COLOR, False, series(nc, lambda r: r.get("server_cores")))], ymax=2)
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(*sys.argv[1:5])
