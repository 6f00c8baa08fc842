#!/usr/bin/env python3
"""Reads criterion's estimates (target/criterion) for benches/rings.rs and prints the README
table: packets per second (mean) for each side and the ratios the issue asks for."""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "target", "criterion")


def pps(group, name, size, batch):
    path = os.path.join(ROOT, group, name, str(size), "new", "estimates.json")
    try:
        with open(path) as f:
            ns = json.load(f)["mean"]["point_estimate"]
    except FileNotFoundError:
        sys.exit(f"missing {path}: run `cargo bench --bench rings` first")
    return batch / (ns * 1e-9)


def main():
    b, ub = 256, 32
    rows = []
    for size in (64, 1500):
        safe = pps("zero_cost", "safe_batch", size, b)
        raw = pps("zero_cost", "raw_pointers", size, b)
        rows.append((f"safe batch vs raw-pointer loop, {size} B", safe, raw, safe / raw, ">= 0.95"))
    for size in (64, 1500):
        single = pps("single_vs_batch", "send_recv_single", size, b)
        batch = pps("single_vs_batch", "reserve_recv_batch", size, b)
        rows.append((f"send/recv one at a time vs batch, {size} B", single, batch, single / batch, "(info)"))
    for size in (64, 1500):
        sync = pps("async", "sync_batch", size, b)
        sink = pps("async", "sink_stream", size, b)
        static = pps("async", "sink_stream_static", size, b)
        zc = pps("async", "async_zero_copy_batch", size, b)
        rows.append((f"async Sink/Stream vs sync batch, {size} B (shared Bytes payload)", sink, sync, sink / sync, ">= 0.7"))
        rows.append((f"async Sink/Stream vs sync batch, {size} B (static Bytes payload)", static, sync, static / sync, ">= 0.7"))
        rows.append((f"async zero-copy batch vs sync batch, {size} B", zc, sync, zc / sync, ">= 0.7"))
    for size in (64, 1500):
        pipe = pps("alternatives", "netmap_pipe", size, b)
        cb = pps("alternatives", "crossbeam_vec", size, b)
        udp = pps("alternatives_udp", "tokio_udp_loopback", size, ub)
        rows.append((f"netmap pipe vs crossbeam Vec<u8> channel, {size} B", pipe, cb, pipe / cb, ">= 5"))
        rows.append((f"netmap pipe vs tokio UdpSocket loopback, {size} B", pipe, udp, pipe / udp, ">= 20"))
        pipe_ip = pps("alternatives", "netmap_pipe_in_place", size, b)
        cb_ip = pps("alternatives", "crossbeam_vec_in_place", size, b)
        rows.append((f"read in place: netmap pipe vs crossbeam Vec<u8>, {size} B", pipe_ip, cb_ip, pipe_ip / cb_ip, ">= 5"))
        rows.append((f"read in place: netmap pipe vs tokio UdpSocket (recv copies), {size} B", pipe_ip, udp, pipe_ip / udp, ">= 20"))
    print("| comparison | A (Mpps) | B (Mpps) | A/B | target |")
    print("|---|---:|---:|---:|---|")
    for name, a, bb, r, t in rows:
        print(f"| {name} | {a / 1e6:.2f} | {bb / 1e6:.2f} | {r:.2f} | {t} |")


if __name__ == "__main__":
    main()
