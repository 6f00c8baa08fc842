"""Turns the R/L/S lines of ci/kernel-bench.sh into Markdown tables of medians of per-round
ratios.

    python3 ci/bench/report.py LINES ROUNDS N
"""
import statistics as st
import sys
from collections import defaultdict


def med(xs):
    return st.median(xs) if xs else float("nan")


def main():
    path, rounds, n = sys.argv[1], sys.argv[2], sys.argv[3]
    lines = [l.split() for l in open(path)]
    nums = lambda xs: all(x.replace(".", "", 1).isdigit() for x in xs)

    # Library loop vs C loop.
    L = defaultdict(dict)  # (round, port, len, dir) -> impl -> (mpps, syscalls, packets)
    for l in lines:
        if l[0] == "L" and len(l) == 9 and nums(l[6:9]):
            L[(l[1], l[2], l[3], l[4])][l[5]] = (float(l[6]), int(l[7]), int(l[8]))
    print(f"## library batch path vs minimal C loop ({rounds} rounds, {n} packets)\n")
    print("| port | frame | direction | kernel_loop / nmloop | nmloop Mpps | "
          "syscalls per 512 packets (C / Rust) |")
    print("|---|---|---|---:|---:|---|")
    for port in ("pipe", "vale"):
        for ln in ("60", "1500"):
            for dr in ("tx", "rx"):
                sel = [d for (r, p, l, x), d in L.items() if (p, l, x) == (port, ln, dr)]
                both = [d for d in sel if "kernel_loop" in d and "nmloop" in d and d["nmloop"][0] > 0]
                ratio = med([d["kernel_loop"][0] / d["nmloop"][0] for d in both])
                c = med([d["nmloop"][0] for d in both])
                per = lambda i: med([d[i][1] * 512 / max(d[i][2], 1) for d in both])
                print(f"| {port} | {ln} B | {dr} | {ratio:.2f} | {c:.2f} | "
                      f"{per('nmloop'):.2f} / {per('kernel_loop'):.2f} |")
    if any("kernel_loop_base" in d for d in L.values()):  # BASE=commit, in the same rounds
        print("\n| port | frame | direction | base / nmloop | kernel_loop / nmloop |")
        print("|---|---|---|---:|---:|")
        for port in ("pipe", "vale"):
            for ln in ("60", "1500"):
                for dr in ("tx", "rx"):
                    sel = [d for (r, p, l, x), d in L.items() if (p, l, x) == (port, ln, dr)
                           and {"kernel_loop_base", "kernel_loop", "nmloop"} <= d.keys()
                           and d["nmloop"][0] > 0]
                    b = med([d["kernel_loop_base"][0] / d["nmloop"][0] for d in sel])
                    k = med([d["kernel_loop"][0] / d["nmloop"][0] for d in sel])
                    print(f"| {port} | {ln} B | {dr} | {b:.2f} | {k:.2f} |")

    # pkt_gen vs C pkt-gen.
    R = defaultdict(dict)  # (round, port, len) -> {(mode, pairing): (tx, rx)}
    for l in lines:
        if l[0] == "R" and len(l) == 8 and nums(l[6:8]):
            R[(l[1], l[2], l[3])][(l[4], l[5])] = (float(l[6]), float(l[7]))
    if R:  # PARTS without pktgen leaves this part out
        print(f"\n## pkt_gen vs C pkt-gen: medians of per-round ratios to C->C "
              f"({rounds} rounds, {n} packets)\n")
        print("| port | frame | Rust side | pairing | sender rate ratio | receiver rate ratio |")
        print("|---|---|---|---|---:|---:|")
        for port in ("pipe", "vale"):
            for ln in ("60", "1500"):
                for mode in ("sync", "async"):
                    for pr, desc in (("R-R", "Rust->Rust"), ("R-C", "Rust->C"), ("C-R", "C->Rust")):
                        tx, rx = [], []
                        for (r, p, l), d in R.items():
                            if (p, l) != (port, ln) or ("sync", "C-C") not in d or (mode, pr) not in d:
                                continue
                            b = d[("sync", "C-C")]
                            tx.append(d[(mode, pr)][0] / b[0])
                            rx.append(d[(mode, pr)][1] / b[1])
                        print(f"| {port} | {ln} B | {mode} | {desc} | {med(tx):.2f} | {med(rx):.2f} |")
        cc = defaultdict(list)
        for (r, p, l), d in R.items():
            if ("sync", "C-C") in d:
                cc[(p, l)].append(d[("sync", "C-C")])
        print("\nC->C medians (Mpps, sender/receiver): " + ", ".join(
            f"{p} {l} B {med([x[0] for x in v]):.2f}/{med([x[1] for x in v]):.2f}"
            for (p, l), v in sorted(cc.items())))

    # System calls.
    S = defaultdict(dict)  # (who, dir) -> syscall -> calls per 512 packets
    for l in lines:
        if l[0] == "S" and len(l) == 6 and nums(l[4:6]):
            S[(l[1], l[2])][l[3]] = int(l[4]) * 512 / int(l[5])
    if S:
        names = sorted({k for d in S.values() for k in d})
        print("\n## system calls per 512 packets (strace -f -c; 200000 packets of 60 B, pipe; "
              "the peer is C pkt-gen)\n")
        print("| program | dir | total | " + " | ".join(names) + " |")
        print("|---|---|---:|" + "---:|" * len(names))
        for who in ("C", "Rust", "Rust-async", "nmloop", "kernel_loop"):
            for dr in ("tx", "rx"):
                d = S.get((who, dr))
                if d is None:
                    continue
                label = {"C": "C pkt-gen", "Rust": "pkt_gen", "Rust-async": "pkt_gen --async"}.get(who, who)
                print(f"| {label} | {dr} | {sum(d.values()):.2f} | "
                      + " | ".join(f"{d.get(k, 0):.2f}" for k in names) + " |")


main()
