#!/bin/sh
# DNS answers per second: examples/dns_responder on xdp: (filtered to UDP port 53) against
# knotd 3.2 in its XDP mode (one UDP worker), on one veth pair, rounds interleaved in one
# run, both loaded by kxdpgun from a network namespace. A benchmark, not a test: it prints
# figures and never fails on speed. Needs root, iproute2, ethtool, Debian `knot` and
# `knot-dnsutils`; builds the example in release mode.
#
#   ROUNDS=5 DURATION=5 ci/dns-bench.sh
#
# Both servers run on CPU 1 (SERVER_CPU=1, the default; SERVER_CPU= leaves them unpinned),
# kxdpgun's thread on CPU 0 (its default affinity).
#
# Prints each round's answers/s twice: replies kxdpgun received, and frames the server sent
# (the veth's tx_packets: kxdpgun's own receive side drops some answers when it cannot keep
# up, `ethtool -S` on its end shows them as rx_queue_0_drops), and each server's CPU time per
# answer sent (user + system of all its threads during the load, /proc/PID/stat); then
# medians and the medians of the per-round ratios (ours / knotd). Our example's own counts (answered,
# batches, the kernel's drop counters) go to stderr. knotd leaves its XDP program attached when it exits: the script removes
# it (`ip link set IF xdp off`) after each knotd round. Everything it creates (veth pair,
# namespace, knotd's files) is removed on exit, also on failure or Ctrl-C.
set -eu
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
QPS=${QPS:-5000000}
BATCH=${BATCH:-64}
# CPU for the servers (kxdpgun pins its thread to CPU 0 by default); empty: not pinned.
SERVER_CPU=${SERVER_CPU-1}
# Extra options for examples/dns_responder (e.g. "--slots 4096 --batch 256").
OURS_ARGS=${OURS_ARGS-}
PIN=""
[ -n "$SERVER_CPU" ] && PIN="taskset -c $SERVER_CPU"
cd "$(dirname "$0")/.."

for t in ip ethtool knotd kxdpgun; do
    command -v "$t" >/dev/null || { echo "$t not found (apt-get install iproute2 ethtool knot knot-dnsutils)"; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 2; }

cargo build --release --example dns_responder >&2
EXE=target/release/examples/dns_responder

A=dnsbA$$; B=dnsbB$$; NS=dnsbench$$
IPA=10.252.0.1; IPB=10.252.0.2
MACA=02:64:6e:73:00:0a; MACB=02:64:6e:73:00:0b
DIR=$(mktemp -d)
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    ip link set "$A" xdp off 2>/dev/null || true
    ip link del "$A" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
ip link add "$A" address $MACA type veth peer name "$B" address $MACB netns "$NS"
ethtool -K "$A" tx off >/dev/null
ip netns exec "$NS" ethtool -K "$B" tx off >/dev/null
ip addr add $IPA/24 dev "$A"
ip -n "$NS" addr add $IPB/24 dev "$B"
ip link set "$A" up
ip -n "$NS" link set "$B" up
ip neigh replace $IPB lladdr $MACB dev "$A" nud permanent
ip -n "$NS" neigh replace $IPA lladdr $MACA dev "$B" nud permanent

printf 'www.example.com. A\nexample.com. A\n' > "$DIR/queries"
cat > "$DIR/example.com.zone" <<ZONE
\$ORIGIN example.com.
\$TTL 300
@   SOA ns.example.com. admin.example.com. 1 3600 600 86400 300
@   NS  ns.example.com.
@   A   192.0.2.1
www A   192.0.2.2
ns  A   192.0.2.3
ZONE
cat > "$DIR/knot.conf" <<CONF
server:
    rundir: $DIR
    listen: $IPA@5353
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
xdp:
    listen: $A@53
    udp: on
database:
    storage: $DIR
log:
  - target: stderr
    any: info
zone:
  - domain: example.com
    file: $DIR/example.com.zone
    storage: $DIR
CONF

# CPU time (user + system, clock ticks of 10 ms) of process $1 and its threads so far.
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# One load run against server $1; prints the replies per second kxdpgun reports and the
# server's CPU time during the run (ms).
load() {
    t0=$(ticks "$1")
    s0=$(cat /sys/class/net/"$A"/statistics/tx_packets)
    ip netns exec "$NS" kxdpgun -t "$DURATION" -Q "$QPS" -b "$BATCH" -i "$DIR/queries" \
        -I "$B" $IPA > "$DIR/gun.txt" 2>&1 || true
    r=$(sed -n 's/^total replies: *[0-9]* *(\([0-9]*\) pps).*/\1/p' "$DIR/gun.txt")
    if [ -z "$r" ]; then echo "kxdpgun said:" >&2; cat "$DIR/gun.txt" >&2; r=0; fi
    t1=$(ticks "$1")
    s1=$(cat /sys/class/net/"$A"/statistics/tx_packets)
    echo "$r $(( (t1 - t0) * 10 )) $(( (s1 - s0) / DURATION ))"
}

ours() {
    $PIN "$EXE" "$A" $OURS_ARGS > "$DIR/ours.txt" 2>&1 &
    SERVER=$!
    for _ in $(seq 50); do grep -q dns_responder "$DIR/ours.txt" && break; sleep 0.1; done
    r=$(load $SERVER)
    kill -TERM $SERVER; wait $SERVER || true; SERVER=
    grep -E "^answered|batches|Kernel" "$DIR/ours.txt" | sed 's/^/    ours: /' >&2
    echo "$r"
}

knot() {
    $PIN knotd -c "$DIR/knot.conf" > "$DIR/knot.txt" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do grep -q "initialized XDP interface" "$DIR/knot.txt" && break; sleep 0.1; done
    sleep 0.5   # the zone loads after the interface
    r=$(load $SERVER)
    kill -TERM $SERVER; wait $SERVER || true; SERVER=
    ip link set "$A" xdp off   # knotd leaves its program attached
    echo "$r"
}

echo "answers/s: received by kxdpgun (recv) and sent by the server (sent: frames out of $A)"
echo "round  ours recv  knotd recv  ratio  ours sent  knotd sent  ratio  ours CPU/sent  knotd CPU/sent"
: > "$DIR/results"
i=1
while [ $i -le "$ROUNDS" ]; do
    if [ $((i % 2)) = 1 ]; then o=$(ours); k=$(knot); else k=$(knot); o=$(ours); fi
    echo "$o $k" >> "$DIR/results"
    echo "$o $k" | awk -v i=$i -v d="$DURATION" '{
        printf "%5d  %9d  %10d  %5.2f  %9d  %10d  %5.2f  %10.2f us  %11.2f us\n", i, $1, $4,
            ($4 > 0 ? $1 / $4 : 0), $3, $6, ($6 > 0 ? $3 / $6 : 0),
            ($3 > 0 ? $2 * 1000 / ($3 * d) : 0), ($6 > 0 ? $5 * 1000 / ($6 * d) : 0) }'
    i=$((i + 1))
done
awk -v d="$DURATION" '
    { o[NR] = $1; k[NR] = $4; r[NR] = ($4 > 0 ? $1 / $4 : 0)
      so[NR] = $3; sk[NR] = $6; rs[NR] = ($6 > 0 ? $3 / $6 : 0)
      co[NR] = ($3 > 0 ? $2 * 1000 / ($3 * d) : 0); ck[NR] = ($6 > 0 ? $5 * 1000 / ($6 * d) : 0) }
    function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        n = NR
        printf "median received: ours %d answers/s, knotd %d answers/s, ratio (median of per-round ratios) %.2f\n", median(o, n), median(k, n), median(r, n)
        printf "median sent:     ours %d answers/s, knotd %d answers/s, ratio (median of per-round ratios) %.2f\n", median(so, n), median(sk, n), median(rs, n)
        printf "median CPU per answer sent: ours %.2f us, knotd %.2f us\n", median(co, n), median(ck, n)
    }' "$DIR/results"
echo "load average: $(cut -d" " -f1-3 /proc/loadavg) (the machine is shared: figures vary)"
