#!/usr/bin/env python3
"""Emulated pipe across two processes vs within one process, with pkt_gen.

Interleaved rounds of (a) `pkt_gen -f tx --both` (sender and receiver threads in one process)
and (b) `pkt_gen -f rx` and `pkt_gen -f tx` as two processes on one pipe. The rate is the
sender's `Speed:` line in both (first packet handed over to the last, the receiver keeping up).
Prints per-round rates, the medians and the median of the per-round ratios.

    cargo build --release --example pkt_gen && python3 benches/xproc.py
    N=10000000 ROUNDS=7 PKT_GEN=path/to/pkt_gen python3 benches/xproc.py
    SEQ=0 python3 benches/xproc.py    # C pkt-gen's default work instead of --seq

With BASE=path/to/an/older/pkt_gen, each round also runs that binary's `--both` (the
in-process pipe before cross-process sharing) and prints this build's in-process rate
relative to it.
"""
import os
import re
import statistics
import subprocess
import sys
import time

N = int(os.environ.get("N", "5000000"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
TARGET = os.environ.get("CARGO_TARGET_DIR", "target")
PKT_GEN = os.environ.get("PKT_GEN", os.path.join(TARGET, "release", "examples", "pkt_gen"))
BASE = os.environ.get("BASE")
# Extra pkt_gen options for every run, e.g. ARGS="--slots 8192 -b 2048".
ARGS = os.environ.get("ARGS", "").split()
# SEQ=1 (default): sequence numbers, and every run must report 0 lost, 0 reordered.
# SEQ=0: C pkt-gen's default work (a copy of the prepared frame, counting only); the check is
# then the receiver's packet count.
SEQ = os.environ.get("SEQ", "1") == "1"
if SEQ:
    ARGS.append("--seq")
ENV = dict(os.environ, NETMAP_RS_BACKEND="emulated", NETMAP_RS_EMU_NS=f"bench{os.getpid()}")


def speed(text):
    m = re.search(r"^Speed: ([0-9.]+) Mpps", text, re.M)
    if not m:
        sys.exit(f"no Speed line in:\n{text}")
    return float(m.group(1))


def checked(text, what):
    if SEQ and "lost 0 reordered 0" not in text:
        sys.exit(f"{what}: frames lost or reordered:\n{text}")
    if not SEQ and f"Sent {N} packets" not in text and f"Received {N} packets" not in text:
        sys.exit(f"{what}: not all {N} frames went through:\n{text}")


def in_process(r, exe=PKT_GEN):
    out = subprocess.run([exe, "-i", f"bi{r}{{1", "-f", "tx", "-n", str(N), "--both", *ARGS],
                         env=ENV, capture_output=True, text=True, check=True).stdout
    checked(out, "in-process")
    return speed(out)


def cross_process(r):
    rx = subprocess.Popen([PKT_GEN, "-i", f"bx{r}}}1", "-f", "rx", "-n", str(N), *ARGS],
                          env=ENV, stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    tx = subprocess.run([PKT_GEN, "-i", f"bx{r}{{1", "-f", "tx", "-n", str(N), *ARGS],
                        env=ENV, capture_output=True, text=True, check=True).stdout
    rx_out, _ = rx.communicate(timeout=120)
    if rx.returncode != 0:
        sys.exit(f"receiver failed:\n{rx_out}")
    checked(rx_out, "cross-process")
    return speed(tx)


def main():
    if not os.path.exists(PKT_GEN):
        sys.exit(f"{PKT_GEN} missing: cargo build --release --example pkt_gen")
    ins, xs, bases = [], [], []
    print(f"pkt_gen {' '.join(ARGS)}, emulated pipe, {N} frames of 60 B per run, "
          f"{ROUNDS} interleaved rounds")
    for r in range(ROUNDS):
        a, b = in_process(r), cross_process(r)
        ins.append(a)
        xs.append(b)
        line = f"round {r}: in-process {a:7.3f} Mpps  cross-process {b:7.3f} Mpps  ratio {b / a:.3f}"
        if BASE:
            c = in_process(r, BASE)
            bases.append(c)
            line += f"  base in-process {c:7.3f} Mpps"
        print(line)
    ratios = [b / a for a, b in zip(ins, xs)]
    print()
    print("| | Mpps (median) |")
    print("|---|---:|")
    print(f"| in-process pipe (`--both`) | {statistics.median(ins):.2f} |")
    print(f"| cross-process pipe (two processes) | {statistics.median(xs):.2f} |")
    print(f"| cross / in, median of per-round ratios | {statistics.median(ratios):.3f} |")
    if BASE:
        rb = [a / c for a, c in zip(ins, bases)]
        print(f"| base in-process pipe (`BASE`) | {statistics.median(bases):.2f} |")
        print(f"| in-process: this build / base, median of ratios | {statistics.median(rb):.3f} |")
    leftover = [f for f in os.listdir("/dev/shm") if f.startswith("netmap-rs.") and "bench" in f]
    if leftover:
        sys.exit(f"left behind in /dev/shm: {leftover}")


if __name__ == "__main__":
    main()
