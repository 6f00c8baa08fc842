#!/usr/bin/env python3
"""Instructions per packet of each benchmark workload, counted by callgrind (valgrind).

Runs `benches/instr.rs` at two iteration counts and divides the difference by the packets
moved, so setup is excluded. Unlike time, the counts repeat exactly from run to run, which
makes them the figure to compare on a noisy shared machine (an instruction is not a fixed
amount of time: memory stalls and memcpy width are not counted).

    python3 benches/instructions.py            # all workloads, 64 and 1500 bytes
"""
import re
import subprocess
import sys

BATCH = 256
LO, HI = 50, 250
WORKLOADS = [
    "safe_batch",
    "raw_pointers",
    "send_recv_single",
    "sync_items",
    "sync_items_static",
    "sink_stream",
    "sink_stream_static",
    "async_zero_copy_batch",
    "crossbeam_vec",
]
COMPARE = [
    ("safe batch vs raw-pointer loop", "safe_batch", "raw_pointers", ">= 0.95"),
    ("send/recv one at a time vs batch", "send_recv_single", "safe_batch", "(info)"),
    ("async Sink/Stream vs sync send/recv, same items (shared Bytes)", "sink_stream", "sync_items", ">= 0.8"),
    ("async Sink/Stream vs sync send/recv, same items (static Bytes)", "sink_stream_static", "sync_items_static", ">= 0.8"),
    ("sync per item (shared Bytes) vs sync batch", "sync_items", "safe_batch", "(info)"),
    ("async Sink/Stream (shared Bytes) vs sync batch", "sink_stream", "safe_batch", "(info)"),
    ("async Sink/Stream (static Bytes) vs sync batch", "sink_stream_static", "safe_batch", "(info)"),
    ("async zero-copy batch vs sync batch", "async_zero_copy_batch", "safe_batch", ">= 0.7"),
    ("netmap pipe vs crossbeam Vec<u8>", "safe_batch", "crossbeam_vec", ">= 5"),
]


def binary():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "instr", "--no-run"],
        capture_output=True, text=True, check=True,
    ).stderr
    m = re.search(r"Executable benches/instr.rs \((.*)\)", out)
    if not m:
        sys.exit("could not find the instr bench executable:\n" + out)
    return m.group(1)


def count(exe, work, iters, size):
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         exe, work, str(iters), str(size)],
        capture_output=True, text=True,
    )
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or not m:
        sys.exit(f"callgrind run of {work} failed:\n{r.stderr[-2000:]}")
    return int(m.group(1))


def main():
    exe = binary()
    per = {}
    for size in (64, 1500):
        for w in WORKLOADS:
            lo, hi = count(exe, w, LO, size), count(exe, w, HI, size)
            per[(w, size)] = (hi - lo) / ((HI - LO) * BATCH)
    print("| workload | 64 B | 1500 B |")
    print("|---|---:|---:|")
    for w in WORKLOADS:
        print(f"| {w} | {per[(w, 64)]:.1f} | {per[(w, 1500)]:.1f} |")
    print()
    print("Ratios as speed (B's instructions / A's), which is what a time ratio would be if")
    print("every instruction cost the same:")
    print()
    print("| comparison | 64 B | 1500 B | target |")
    print("|---|---:|---:|---|")
    for name, a, b, t in COMPARE:
        r64 = per[(b, 64)] / per[(a, 64)]
        r1500 = per[(b, 1500)] / per[(a, 1500)]
        print(f"| {name} | {r64:.2f} | {r1500:.2f} | {t} |")


if __name__ == "__main__":
    main()
