#!/usr/bin/env bash
# `afpacket:` receive on TPACKET_V3 blocks against TPACKET_V2 frames, on one veth pair (root).
# A benchmark, not a test: it prints figures and never fails on speed. Not run by CI.
#
#   ci/afpacket-blocks-bench.sh                 # ROUNDS=3 RATE=100000 N=300000 PINGS=2000
#   TIMEOUTS="0 1 2 4" ROUNDS=5 ci/afpacket-blocks-bench.sh
#
# For each block timeout in TIMEOUTS (ms; 0: TPACKET_V2 frames), in ROUNDS interleaved rounds:
#   - round-trip latency: `pkt_gen -f ping` on afpacket:A, `pkt_gen -f pong` on afpacket:B in
#     the namespace (PINGS round trips; both ends spin briefly, then sleep in poll);
#   - RX CPU per packet: `pkt_gen -f rx -W` on afpacket:A while `pkt_gen -f tx -R RATE -n N`
#     sends from afpacket:B; the receiver's utime + stime (/proc/PID/stat, sampled until it
#     exits, 1 s after the last packet) divided by the packets it received.
# Prints the medians per timeout: RTT p50 and p99 (µs), CPU per packet (ns), kernel drops.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} RATE=${RATE:-100000} N=${N:-300000} PINGS=${PINGS:-2000}
TIMEOUTS=${TIMEOUTS:-"0 1 4"}
cargo build --release --example pkt_gen >/dev/null 2>&1
B=$PWD/target/release/examples/pkt_gen
NS=nmbk$$ A=nmbka$$ P=nmbkb$$
out=$(mktemp -d)
cleanup() { ip link del "$A" 2>/dev/null || true; ip netns del "$NS" 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT
ip netns add "$NS"
ip link add "$A" type veth peer name "$P"
ip link set "$P" netns "$NS"
ip link set "$A" up
ip -n "$NS" link set "$P" up
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; }
for r in $(seq "$ROUNDS"); do
  for t in $TIMEOUTS; do
    x=(--block-timeout "$t")
    ip netns exec "$NS" "$B" -i "afpacket:$P" -f pong -w 0 "${x[@]}" >/dev/null 2>&1 &
    pong=$!
    sleep 1
    "$B" -i "afpacket:$A" -f ping -n "$PINGS" -w 1 "${x[@]}" 2>/dev/null |
      sed -n 's/.* p50 \([0-9.]*\) .* p99 \([0-9.]*\) .*/\1 \2/p' >>"$out/rtt.$t"
    kill -INT "$pong"; wait "$pong" 2>/dev/null || true
    "$B" -i "afpacket:$A" -f rx -W -w 0 "${x[@]}" >"$out/rx" 2>&1 &
    rx=$!
    sleep 1
    t0=$(cpu "$rx"); last=$t0
    ip netns exec "$NS" "$B" -i "afpacket:$P" -f tx -R "$RATE" -n "$N" -w 0 >/dev/null 2>&1
    while kill -0 "$rx" 2>/dev/null; do c=$(cpu "$rx") && [ -n "$c" ] && last=$c; sleep 0.05; done
    got=$(sed -n 's/^Received \([0-9]*\) packets.*/\1/p' "$out/rx")
    drops=$(sed -n 's/.*rx_ring_full \([0-9]*\).*/\1/p' "$out/rx" | tail -1)
    awk -v c=$((last - t0)) -v k="$tck" -v g="$got" -v d="${drops:-0}" \
      'BEGIN { printf "%.0f %s\n", c / k * 1e9 / g, d }' >>"$out/cpu.$t"
  done
done
med() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "| block timeout (ms; 0: TPACKET_V2) | RTT p50 µs | RTT p99 µs | RX CPU ns/packet at $RATE pps | drops (max) |"
echo "|---:|---:|---:|---:|---:|"
for t in $TIMEOUTS; do
  p50=$(cut -d' ' -f1 "$out/rtt.$t" | med)
  p99=$(cut -d' ' -f2 "$out/rtt.$t" | med)
  ns=$(cut -d' ' -f1 "$out/cpu.$t" | med)
  dr=$(cut -d' ' -f2 "$out/cpu.$t" | sort -n | tail -1)
  echo "| $t | $p50 | $p99 | $ns | $dr |"
done
