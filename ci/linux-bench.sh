#!/usr/bin/env bash
# Side-by-side figures for the AF_XDP and AF_PACKET backends on a veth pair (end A here, end B
# in a namespace), in one run. A benchmark, not a test: it prints rates and ratios and never
# fails on speed. Needs root, iproute2, ethtool and trafgen (Debian: netsniff-ng). Not run by
# CI.
#
#   ci/linux-bench.sh        # ROUNDS=3 N=1000000 by default; 60-byte UDP frames
#
# In each of ROUNDS interleaved rounds:
#   - TX: pkt_gen -f tx on afpacket:A, on xdp:A, and on xdp:A --async, against trafgen (an
#     AF_PACKET TX-ring generator) sending the same frame on the same veth. Sender rates.
#   - RX: trafgen on A sends 2N frames as fast as it can; pkt_gen -f rx on afpacket:B and on
#     xdp:B (in the namespace) receives N, timed from its first packet. Receiver rates (the
#     receiver sees what the veth path delivers to it; frames it is too slow for are dropped
#     before it, so the rate is its own).
# Prints every rate and the medians of the per-round ratios as a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
N=${N:-1000000}
export CARGO_TERM_COLOR=never
target=${CARGO_TARGET_DIR:-target}

[ "$(id -u)" = 0 ] || { echo "linux-bench: needs root (veth, namespaces, AF_XDP)"; exit 1; }
for t in ip ethtool trafgen; do
  command -v $t >/dev/null || { echo "linux-bench: $t missing (apt-get install iproute2 ethtool netsniff-ng)"; exit 1; }
done
cargo build --release --example pkt_gen >/dev/null 2>&1
PG=$target/release/examples/pkt_gen

A=nmbA$$; B=nmbB$$; NS=nmbench$$
IPA=10.199.0.1; IPB=10.199.0.2; MACA=02:6e:be:00:00:0a; MACB=02:6e:be:00:00:0b
work=$(mktemp -d)
cleanup() { ip link del $A 2>/dev/null || true; ip netns del $NS 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add $NS
ip link add $A address $MACA type veth peer name $B address $MACB netns $NS
echo 1 > /proc/sys/net/ipv6/conf/$A/disable_ipv6
ip netns exec $NS sh -c "echo 1 > /proc/sys/net/ipv6/conf/$B/disable_ipv6"
ethtool -K $A tx off >/dev/null; ip netns exec $NS ethtool -K $B tx off >/dev/null
ip addr add $IPA/24 dev $A; ip -n $NS addr add $IPB/24 dev $B
ip link set $A up; ip -n $NS link set $B up
ip neigh replace $IPB lladdr $MACB dev $A nud permanent
ip -n $NS neigh replace $IPA lladdr $MACA dev $B nud permanent

# The frame pkt_gen sends (60 bytes: Ethernet, IPv4, UDP 1234 -> 1234, 18 bytes of payload).
cat >"$work/udp.cfg" <<EOF
{ eth(da=$MACB, sa=$MACA), ipv4(sa=$IPA, da=$IPB), udp(sp=1234, dp=1234), fill(0x00, 18) }
EOF

now() { date +%s.%N; }
mpps() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.3f", n / (b - a) / 1e6 }'; }
speed() { sed -n 's/^Speed: \([0-9.]*\) Mpps.*/\1/p' | tail -1; }

tx_pkt_gen() { # PREFIX [--async]
  "$PG" -i "$1:$A" -f tx -n "$N" -D $MACB -S $MACA -d $IPB:1234 -s $IPA:1234 ${2:-} | speed
}
tx_trafgen() {
  local t0 t1
  t0=$(now); trafgen -o $A -i "$work/udp.cfg" -n "$N" -P 1 -C -Q >/dev/null 2>&1; t1=$(now)
  mpps "$N" "$t0" "$t1"
}
rx_pkt_gen() { # PREFIX
  local out="$work/rx.out"
  ip netns exec $NS "$PG" -i "$1:$B" -f rx -n "$N" -T 100000 >"$out" 2>&1 &
  local rx=$!
  # The receiver is ready once its banner is out (its port is open).
  for _ in $(seq 200); do grep -q "^pkt_gen" "$out" && break; sleep 0.05; done
  trafgen -o $A -i "$work/udp.cfg" -n $((4 * N)) -P 1 -C -Q >/dev/null 2>&1 &
  local tg=$!
  timeout 60 tail --pid=$rx -f /dev/null || kill $rx 2>/dev/null || true
  kill $tg 2>/dev/null || true; wait $tg 2>/dev/null || true
  speed <"$out"
}

declare -A rate
names=(tx_trafgen tx_afpacket tx_xdp tx_xdp_async rx_afpacket rx_xdp)
for r in $(seq "$ROUNDS"); do
  rate[tx_trafgen,$r]=$(tx_trafgen)
  rate[tx_afpacket,$r]=$(tx_pkt_gen afpacket)
  rate[tx_xdp,$r]=$(tx_pkt_gen xdp)
  rate[tx_xdp_async,$r]=$(tx_pkt_gen xdp --async)
  rate[rx_afpacket,$r]=$(rx_pkt_gen afpacket)
  rate[rx_xdp,$r]=$(rx_pkt_gen xdp)
  line="round $r:"
  for k in "${names[@]}"; do line="$line $k=${rate[$k,$r]:-?}"; done
  echo "$line (Mpps)"
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else print v[int((NR + 1) / 2)] }'; }
ratio_median() { # A B
  for r in $(seq "$ROUNDS"); do
    awk -v a="${rate[$1,$r]:-0}" -v b="${rate[$2,$r]:-0}" 'BEGIN { if (b > 0 && a > 0) printf "%.2f\n", a / b }'
  done | median
}
rate_median() { for r in $(seq "$ROUNDS"); do echo "${rate[$1,$r]:-0}"; done | median; }

echo
echo "veth pair, 60-byte UDP frames, N=$N, $ROUNDS rounds, $(nproc) CPUs, kernel $(uname -r); medians"
echo
echo "| comparison | A (Mpps) | B (Mpps) | A/B |"
echo "|---|---:|---:|---:|"
row() { echo "| $1 | $(rate_median "$2") | $(rate_median "$3") | $(ratio_median "$2" "$3") |"; }
row "AF_PACKET TX: pkt_gen -i afpacket:A vs trafgen" tx_afpacket tx_trafgen
row "TX: pkt_gen -i xdp:A vs -i afpacket:A" tx_xdp tx_afpacket
row "RX: pkt_gen -i xdp:B vs -i afpacket:B (trafgen sending)" rx_xdp rx_afpacket
row "TX on xdp:A: pkt_gen --async vs sync" tx_xdp_async tx_xdp
