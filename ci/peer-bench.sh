#!/usr/bin/env bash
# Side by side with the libraries users would pick instead, on one veth pair (end A here, end B
# in a namespace), in one run of interleaved rounds: netring 0.32 (ci/peers, a crate outside
# netmap-rs's dependency graph), dpdk-testpmd (net_af_xdp and net_af_packet drivers) and
# trafgen. A benchmark, not a test: it prints figures and medians of per-round ratios and
# never fails on speed. Not run by CI.
#
#   ci/peer-bench.sh            # ROUNDS=5 SECS=3 LOAD=150000 (pps)
#   PG=/tmp/pkt_gen.old ONLY='^tx_xdp_ours$' ROUNDS=1 ci/peer-bench.sh   # another build as ours
#
# Figures, each contender started fresh in each round:
#   - TX rate: the sender on A runs until stopped; the rate is the growth of B's rx_packets
#     over SECS seconds after a warm-up. B drops every frame at TCX ingress (ci/peers tcx-drop:
#     `r0 = TC_ACT_SHOT; exit`), after the AF_PACKET taps and before IP, so B's IP stack is not
#     measured.
#   - RX CPU per packet at one offered load: trafgen on A sends LOAD pps for SECS seconds; the
#     receiver on B counts what it gets; CPU = the growth of the receiver's run time over all
#     its threads (/proc/PID/task/*/schedstat, nanoseconds) / packets received.
#   - RX rate at full load: trafgen on A sends FULL * SECS frames as fast as it can; packets
#     the receiver counted / trafgen's run time (a fixed count, so nothing arrives after it).
# Ours is pkt_gen (examples/pkt_gen: reserve_batch + fill_reused + sync; batch + sync +
# wait_readable), the same paths users call; "busy" is pkt_gen --busy (NetmapBuilder::busy_poll:
# waits spin, a core given to the queue, as testpmd's poll-mode drivers run: pinned with -a 1
# to CPU 1, where testpmd -l 0-1 runs its forwarding lcore; trafgen -P 1 pins itself to CPU
# 0); "blocks" is pkt_gen --block-timeout 1 on afpacket: (TPACKET_V3 blocks,
# NetmapBuilder::block_timeout; the default is TPACKET_V2 frames, for latency), "blocks60"
# the same at netring's default retire timeout, 60 ms (the like-for-like CPU row). Every receiver counts packets and bytes. Writes target/peer-bench/{lines,table.md,chart.svg}.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-3}
LOAD=${LOAD:-150000}
FULL=${FULL:-2000000}    # pps trafgen manages on this machine: full load sends FULL * SECS frames
ONLY=${ONLY:-}          # a regular expression: run only the contenders it matches
EACH=${EACH---each}     # how our AF_PACKET receivers read (EACH= : batch + sync, for builds before --each)
export CARGO_TERM_COLOR=never
target=${CARGO_TARGET_DIR:-target}
out=$target/peer-bench
mkdir -p "$out"

[ "$(id -u)" = 0 ] || { echo "peer-bench: needs root (veth, namespaces, AF_XDP, huge pages)"; exit 1; }
for t in ip ethtool trafgen dpdk-testpmd python3; do
  command -v $t >/dev/null || { echo "peer-bench: $t missing (apt-get install iproute2 ethtool netsniff-ng dpdk dpdk-dev)"; exit 1; }
done
echo "building pkt_gen and ci/peers (netring 0.32) ..."
cargo build --release --example pkt_gen >/dev/null 2>&1
(cd ci/peers && cargo build --release --ignore-rust-version --target-dir "../../$target/peers" >/dev/null 2>&1) \
  || { echo "peer-bench: ci/peers does not build (cd ci/peers && cargo build --release --ignore-rust-version)"; exit 1; }
PG=${PG:-$target/release/examples/pkt_gen}   # PG=path: another build of pkt_gen as "ours"
PEERS=$target/peers/release/netmap-rs-peers

# DPDK needs huge pages (512 x 2 MiB); give back what we took at the end.
hp_before=$(cat /proc/sys/vm/nr_hugepages)
[ "$hp_before" -ge 512 ] || echo 512 > /proc/sys/vm/nr_hugepages
mountpoint -q /dev/hugepages || { mkdir -p /dev/hugepages; mount -t hugetlbfs none /dev/hugepages; }

A=nmpA$$; B=nmpB$$; NS=nmpeer$$
IPA=10.198.0.1; IPB=10.198.0.2; MACA=02:6e:be:01:00:0a; MACB=02:6e:be:01:00:0b
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 0.3
  ip link del $A 2>/dev/null || true; ip netns del $NS 2>/dev/null || true
  rm -rf "$work" /dev/hugepages/nmpeer* 2>/dev/null || true
  echo "$hp_before" > /proc/sys/vm/nr_hugepages
}
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

# The sink on B for the whole run.
ip netns exec $NS "$PEERS" tcx-drop $B >"$work/sink.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q ready "$work/sink.out" && break; sleep 0.05; done
grep -q ready "$work/sink.out" || { echo "peer-bench: TCX sink failed: $(cat "$work/sink.out")"; exit 1; }

# The frame every sender sends (60 bytes: Ethernet, IPv4, UDP 1234 -> 1234, 18 bytes of zeros).
cat >"$work/udp.cfg" <<CFG
{ eth(da=$MACB, sa=$MACA), ipv4(sa=$IPA, da=$IPB), udp(sp=1234, dp=1234), fill(0x00, 18) }
CFG

rxp() { ip netns exec $NS cat /sys/class/net/$B/statistics/rx_packets; }
now() { date +%s.%N; }
cpu_ns() { # PID: run time of all its threads, nanoseconds
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'
}
settle() { # what a contender may leave: an XDP program, a queue the kernel frees late
  ip link set dev $A xdp off 2>/dev/null || true
  ip -n $NS link set dev $B xdp off 2>/dev/null || true
  sleep 0.5
}
stop() { kill -INT "$1" 2>/dev/null || true; timeout 10 tail --pid="$1" -f /dev/null || kill -9 "$1" 2>/dev/null || true; }
testpmd() { # VDEV MODE -> dpdk-testpmd forwarding on one core
  echo "dpdk-testpmd -l 0-1 -m 256 --no-pci --file-prefix nmpeer$$ --vdev $1 --log-level=error" \
    "-- --forward-mode=$2 --txpkts=60 --auto-start --stats-period=1"
}
launch() { # COMMAND OUTPUT -> the PID of the program itself (exec all the way down)
  bash -c "exec $1" >"$2" 2>&1 </dev/null &
  echo $!
}

tx_cmd() { # NAME -> command line of the sender on A
  case $1 in
    xdp_ours) echo "$PG -i xdp:$A -f tx -n 0 -w 0 -D $MACB -S $MACA -d $IPB:1234 -s $IPA:1234" ;;
    xdp_busy) echo "$(tx_cmd xdp_ours) --busy -a 1" ;;
    xdp_netring) echo "$PEERS tx-xdp $A $MACB $MACA $IPB $IPA" ;;
    xdp_dpdk) testpmd net_af_xdp0,iface=$A,start_queue=0,queue_count=1 txonly ;;
    pkt_ours) echo "$PG -i afpacket:$A -f tx -n 0 -w 0 -D $MACB -S $MACA -d $IPB:1234 -s $IPA:1234" ;;
    pkt_busy) echo "$(tx_cmd pkt_ours) --busy -a 1" ;;
    pkt_netring) echo "$PEERS tx-packet $A $MACB $MACA $IPB $IPA" ;;
    pkt_dpdk) testpmd net_af_packet0,iface=$A txonly ;;
    pkt_trafgen) echo "trafgen -o $A -i $work/udp.cfg -P 1 -C -Q" ;;
  esac
}
tx_rate() { # NAME -> Mpps delivered to B
  settle
  local p; p=$(launch "$(tx_cmd "$1")" "$work/tx.out")
  sleep 1.5
  local c0 t0 c1 t1
  c0=$(rxp); t0=$(now); sleep "$SECS"; c1=$(rxp); t1=$(now)
  stop $p
  awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.4f", (b - a) / (e - s) / 1e6 }'
}

rx_cmd() { # NAME -> command line of the receiver on B (in the namespace)
  local n="ip netns exec $NS"
  case $1 in
    xdp_ours) echo "$n $PG -i xdp:$B -f rx -n 0 -w 0" ;;
    xdp_busy) echo "$(rx_cmd xdp_ours) --busy -a 1" ;;
    xdp_netring) echo "$n $PEERS rx-xdp $B" ;;
    xdp_dpdk) echo "$n $(testpmd net_af_xdp0,iface=$B,start_queue=0,queue_count=1 rxonly)" ;;
    pkt_ours) echo "$n $PG -i afpacket:$B -f rx -n 0 -w 0 $EACH" ;;
    pkt_busy) echo "$(rx_cmd pkt_ours) --busy -a 1" ;;
    pkt_blocks) echo "$(rx_cmd pkt_ours) --block-timeout 1" ;;
    pkt_blocks60) echo "$(rx_cmd pkt_ours) --block-timeout 60" ;;
    pkt_netring) echo "$n $PEERS rx-packet $B" ;;
    pkt_dpdk) echo "$n $(testpmd net_af_packet0,iface=$B rxonly)" ;;
  esac
}
received() { # OUTPUT-FILE -> packets the receiver counted
  { sed -n 's/^Received \([0-9]*\) packets.*/\1/p' "$1"
    sed -n 's/.*RX-packets: *\([0-9]*\).*/\1/p' "$1"; } | sort -n | tail -1
}
rx_run() { # NAME RATE-ARG COUNT -> "packets cpu_ns secs"
  settle
  local p; p=$(launch "$(rx_cmd "$1")" "$work/rx.out")
  for _ in $(seq 100); do grep -q -E "^pkt_gen|^ready|Press enter|Start automatic" "$work/rx.out" && break; sleep 0.05; done
  sleep 1
  local c0 c1 t0 t1
  c0=$(cpu_ns "$p"); t0=$(now); local a0; a0=$(rxp)
  # A fixed count (trafgen exits once all are out), so nothing is sent after the window.
  timeout -s INT $((SECS * 4)) trafgen -o $A -i "$work/udp.cfg" -P 1 -C -Q $2 -n "$3" >/dev/null 2>&1 || true
  local te; te=$(now)
  sleep 0.3
  c1=$(cpu_ns "$p"); t1=$(now); local a1; a1=$(rxp)
  stop $p
  cp "$work/rx.out" "$out/rx-$1.out"
  local got; got=$(received "$work/rx.out")
  echo "rx-detail $1 got=${got:-0} arrived=$((a1 - a0)) cpu_ns=$((c1 - c0))" >>"$out/lines.detail"
  echo "${got:-0} $((c1 - c0)) $(awk -v s="$t0" -v e="$te" 'BEGIN { print e - s }')"
}
rx_cpu() { # NAME -> ns of CPU per packet received at LOAD pps
  local r; r=$(rx_run "$1" "-b ${LOAD}pps" $((LOAD * SECS)))
  awk -v p="${r%% *}" -v c="$(echo "$r" | awk '{ print $2 }')" 'BEGIN { if (p > 0) printf "%.1f", c / p; else print "nan" }'
}
rx_rate() { # NAME -> Mpps the receiver counted at full load
  local r; r=$(rx_run "$1" "" $((FULL * SECS)))
  awk -v p="${r%% *}" -v s="${r##* }" 'BEGIN { printf "%.4f", p / s / 1e6 }'
}

wanted() { [ -z "$ONLY" ] || [[ $1 =~ $ONLY ]]; }
lines=$out/lines; : >"$lines"
for r in $(seq "$ROUNDS"); do
  for c in xdp_ours xdp_busy xdp_netring xdp_dpdk pkt_ours pkt_busy pkt_netring pkt_dpdk pkt_trafgen; do
    wanted "tx_$c" || continue
    v=$(tx_rate $c); echo "tx $c $r $v" | tee -a "$lines"
  done
  for c in xdp_ours xdp_netring xdp_dpdk pkt_ours pkt_blocks pkt_blocks60 pkt_netring pkt_dpdk; do
    wanted "rxcpu_$c" || continue
    v=$(rx_cpu $c); echo "rxcpu $c $r $v" | tee -a "$lines"
  done
  for c in xdp_ours xdp_busy xdp_netring xdp_dpdk pkt_ours pkt_blocks pkt_busy pkt_netring pkt_dpdk; do
    wanted "rxrate_$c" || continue
    v=$(rx_rate $c); echo "rxrate $c $r $v" | tee -a "$lines"
  done
done
python3 ci/bench/peers_report.py "$lines" "$out" \
  "veth pair, 60-byte UDP frames, $ROUNDS rounds of ${SECS} s, RX load $LOAD pps, $(nproc) CPUs, kernel $(uname -r)"
