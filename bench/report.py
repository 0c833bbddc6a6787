#!/usr/bin/env python3
"""Turn bench/results/{arena,node}.jsonl into a table (in docs/benchmarks.md, between
the comparison markers) and a bar chart (SVG), Arena against Node.js, same run."""
import json
import sys
from datetime import datetime, timezone


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows[r["scenario"]] = r
    return rows


def metrics(r):
    c, v, b, ch = r.get("connect", {}), r.get("revoke", {}), r.get("broadcast", {}), r.get("churn", {})
    rss = lambda x: None if x is None else x / 1e6
    return [
        # (label, value, unit, higher is better)
        ("Memory per idle socket", c.get("server_bytes_per_socket"), "bytes", False),
        ("Server CPU per handshake + token check", c.get("server_cpu_us_per_handshake"), "µs", False),
        ("… of which in user space", c.get("server_user_cpu_us_per_handshake"), "µs", False),
        ("Handshakes per second (5,000 sockets)", c.get("handshakes_per_sec"), "/s", True),
        ("Handshake latency p99", c.get("latency_ms", {}).get("p99"), "ms", False),
        ("Logout with 10 sockets: request p99", v.get("logout_request_ms", {}).get("p99"), "ms", False),
        ("Logout → all 10 sockets closed, p99", v.get("all_closed_ms", {}).get("p99"), "ms", False),
        ("Sockets left open after logout", v.get("left_open"), "", False),
        ("Broadcast: delivered messages per second", b.get("delivered_per_sec"), "/s", True),
        ("Broadcast: chat latency p99", b.get("chat_latency_ms", {}).get("p99"), "ms", False),
        ("Broadcast: server CPU seconds (10 s run)", b.get("server_cpu_secs"), "s", False),
        ("Churn: visits per second", None if not ch else ch.get("visits", 0) / max(ch.get("seconds", 1), 1), "/s", True),
        ("Churn: server RSS growth over the run", None if not ch else rss(ch.get("server_rss_after", 0) - ch.get("server_rss_before", 0)), "MB", False),
    ]


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, (int,)) or (isinstance(v, float) and abs(v) >= 100):
        return f"{v:,.0f}"
    return f"{v:.2f}"


def ratio(a, n, higher_better):
    if a is None or n is None or a <= 0 or n <= 0:
        return None
    return (a / n) if higher_better else (n / a)


def main(results, doc, svg):
    arena, node = load(f"{results}/arena.jsonl"), load(f"{results}/node.jsonl")
    am, nm = metrics(arena), metrics(node)
    rows = []
    for (label, a, unit, hb), (_, n, _, _) in zip(am, nm):
        # A ratio against (almost) nothing says nothing: growth under 1 MB is "flat".
        r = None if "growth" in label and min(a or 0, n or 0) < 1 else ratio(a, n, hb)
        rows.append((label, a, n, unit, r))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "<!-- comparison:start (written by bench/report.py) -->",
        f"Run of {now}: `bench/run.sh` on this machine (2 cores), release build, the load client on the same machine.",
        "",
        "| measure | Arena | Node.js (ws + jsonwebtoken) | Arena's advantage |",
        "|---|---|---|---|",
    ]
    for label, a, n, unit, r in rows:
        adv = "–" if r is None else f"{r:.2f}×"
        lines.append(f"| {label} | {fmt(a)} {unit} | {fmt(n)} {unit} | {adv} |")
    lines += ["", "![Arena vs Node.js](benchmark-comparison.svg)", "", "<!-- comparison:end -->"]
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


def write_svg(path, bars):
    width, row_h, left = 760, 30, 330
    height = 50 + row_h * len(bars) + 30
    top = max([r for _, r in bars] + [1.0])
    scale = (width - left - 80) / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           '<text x="10" y="22" font-size="14" font-weight="bold">Arena\'s advantage over Node.js (ws + jsonwebtoken), same run; 1× = equal</text>']
    x1 = left + scale * 1.0
    for i, (label, r) in enumerate(bars):
        y = 40 + i * row_h
        color = "#3b7dd8" if r >= 1 else "#d8573b"
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{left}" y="{y + 4}" width="{max(1, scale * r):.1f}" height="{row_h - 10}" fill="{color}"/>')
        out.append(f'<text x="{left + scale * r + 6:.1f}" y="{y + 16}">{r:.2f}×</text>')
    out.append(f'<line x1="{x1:.1f}" x2="{x1:.1f}" y1="36" y2="{height - 24}" stroke="#333" stroke-dasharray="4 3"/>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


if __name__ == "__main__":
    main(*sys.argv[1:4])
