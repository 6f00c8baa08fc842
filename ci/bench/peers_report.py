"""Turns the lines of ci/peer-bench.sh (`KIND CONTENDER ROUND VALUE`) into a Markdown table of
medians and medians of per-round ratios, and an SVG bar chart of the same ratios.

    python3 ci/bench/peers_report.py LINES OUT-DIR CAPTION
"""
import math
import statistics as st
import sys
from collections import defaultdict

# (kind, driver, label, unit, higher value is better)
ROWS = [
    ("tx", "xdp", "AF_XDP TX", "Mpps", True),
    ("tx", "pkt", "AF_PACKET TX", "Mpps", True),
    ("rxcpu", "xdp", "AF_XDP RX, CPU per packet", "ns", False),
    ("rxcpu", "pkt", "AF_PACKET RX, CPU per packet", "ns", False),
    ("rxrate", "xdp", "AF_XDP RX, rate at full load", "Mpps", True),
    ("rxrate", "pkt", "AF_PACKET RX, rate at full load", "Mpps", True),
]
PEERS = ["netring", "dpdk", "trafgen"]


def num(s):
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) and v > 0 else None


def main():
    path, out, caption = sys.argv[1], sys.argv[2], sys.argv[3]
    v = defaultdict(dict)  # (kind, contender) -> round -> value
    for line in open(path):
        f = line.split()
        if len(f) == 4 and num(f[3]) is not None:
            v[(f[0], f[1])][f[2]] = num(f[3])

    def med(kind, c):
        xs = list(v[(kind, c)].values())
        return st.median(xs) if xs else None

    def ratio(kind, ours, peer, higher):
        rs = []
        for r, a in v[(kind, ours)].items():
            b = v[(kind, peer)].get(r)
            if b:
                rs.append(a / b if higher else b / a)
        return (st.median(rs), rs) if rs else (None, [])

    md = [f"{caption}; medians of per-round ratios (>= 1.0: ours ahead; CPU rows: peer ns / ours ns)", ""]
    md.append("| figure | ours | ours busy-poll | ours V3 1 ms | ours V3 60 ms | netring | dpdk-testpmd "
              "| trafgen | ours/netring | V3 1 ms/netring | V3 60 ms/netring | ours/dpdk | busy/dpdk "
              "| ours/trafgen |")
    md.append("|---|" + "---:|" * 13)
    bars = []
    fmt = lambda x, u: "–" if x is None else (f"{x:.3f} {u}" if u == "Mpps" else f"{x:.0f} {u}")
    for kind, drv, label, unit, higher in ROWS:
        ours = f"{drv}_ours"
        cells = [fmt(med(kind, f"{drv}_{c}"), unit)
                 for c in ("ours", "busy", "blocks", "blocks60", "netring", "dpdk", "trafgen")]
        rcells = []
        for a, b in (("ours", "netring"), ("blocks", "netring"), ("blocks60", "netring"),
                     ("ours", "dpdk"), ("busy", "dpdk"), ("ours", "trafgen")):
            m, rs = ratio(kind, f"{drv}_{a}", f"{drv}_{b}", higher)
            rcells.append("–" if m is None else f"**{m:.2f}**" if m < 1 else f"{m:.2f}")
            if m is not None:
                who = {"ours": "ours", "busy": "ours (busy-poll)", "blocks": "ours (V3 1 ms)",
                       "blocks60": "ours (V3 60 ms)"}[a]
                bars.append((f"{label}: {who} vs {b}", m))
        md.append(f"| {label} | " + " | ".join(cells + rcells) + " |")
    table = "\n".join(md) + "\n"
    open(f"{out}/table.md", "w").write(table)
    open(f"{out}/chart.svg", "w").write(svg(bars, caption))
    print()
    print(table)
    print(f"chart: {out}/chart.svg")


def svg(bars, caption):
    w, left, row, top = 760, 300, 24, 40
    scale = 180  # pixels per 1.0
    h = top + row * len(bars) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="13">netmap-rs / peer (median of per-round ratios; right of the line: ours ahead)</text>']
    x1 = left + scale
    out.append(f'<line x1="{x1}" y1="{top - 8}" x2="{x1}" y2="{top + row * len(bars)}" stroke="#444" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x1 - 8}" y="{top - 12}">1.0</text>')
    for i, (name, m) in enumerate(bars):
        y = top + i * row
        bw = min(m, 2.3) * scale
        color = "#2a7" if m >= 1 else "#d64"
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{name}</text>')
        out.append(f'<rect x="{left}" y="{y + 3}" width="{bw:.1f}" height="{row - 8}" fill="{color}"/>')
        out.append(f'<text x="{left + bw + 5:.1f}" y="{y + 15}">{m:.2f}</text>')
    out.append(f'<text x="10" y="{h - 12}" font-size="11">{caption} (ci/peer-bench.sh)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
