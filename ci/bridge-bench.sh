#!/usr/bin/env bash
# The bridge example between two veth pairs on AF_XDP: the two xdp: ports on one memory
# (one UMEM, zero_copy_forward swaps buffers) against each port on a memory of its own
# (`bridge --copy`: every frame copied from one port's buffer into the other's). A
# benchmark, not a test: it prints rates and ratios and never fails on speed. Needs root,
# iproute2, ethtool and trafgen (Debian: netsniff-ng). Not run by CI.
#
#   ci/bridge-bench.sh                 # ROUNDS=5 SECS=4 LEN=60 by default
#   LEN=1500 ROUNDS=7 ci/bridge-bench.sh
#
# Wire: trafgen in namespace 1 floods LEN-byte UDP frames into pair 1 (A1 here); the bridge
# forwards A1 -> A2; pair 2 carries them into namespace 2, where the stack drops them (they
# are addressed to a MAC nobody has: no replies). Each round runs both bridges, in turn
# (the order alternates), for SECS seconds of flood each; a bridge's rate is the median of
# its per-second `a->b` reports, the first and last second left out, and its CPU time (user
# and system, all threads, from /proc) per frame it forwarded. The generator competes with
# the bridge for the CPUs, so on a small or loaded machine the CPU per frame is the steadier
# figure. Prints both per round and the medians of the per-round ratios (rate shared/copy,
# CPU per frame copy/shared: above 1 means shared is faster / cheaper).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-4}
LEN=${LEN:-60}
export CARGO_TERM_COLOR=never
target=${CARGO_TARGET_DIR:-target}

[ "$(id -u)" = 0 ] || { echo "bridge-bench: needs root (veth, namespaces, AF_XDP)"; exit 1; }
for t in ip ethtool trafgen; do
  command -v $t >/dev/null || { echo "bridge-bench: $t missing (apt-get install iproute2 ethtool netsniff-ng)"; exit 1; }
done
[ "$LEN" -ge 60 ] && [ "$LEN" -le 1514 ] || { echo "bridge-bench: LEN must be 60..1514"; exit 1; }
cargo build --release --example bridge >/dev/null 2>&1
BR=$target/release/examples/bridge

# Outputs on tmpfs: a write to a disk file can stall for long on a machine busy writing.
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
pairs=()
cleanup() {
  for p in "${pairs[@]}"; do ip link del "nbbA$p$$" 2>/dev/null || true; ip netns del "nbb$p$$" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
for p in 1 2; do # veth pair p: A$p here, B$p in namespace $p
  A=nbbA$p$$; B=nbbB$p$$; NS=nbb$p$$
  pairs+=("$p")
  ip netns add $NS
  ip link add $A address 02:6e:bb:00:0$p:0a type veth peer name $B address 02:6e:bb:00:0$p:0b netns $NS
  echo 1 > /proc/sys/net/ipv6/conf/$A/disable_ipv6
  ip netns exec $NS sh -c "echo 1 > /proc/sys/net/ipv6/conf/$B/disable_ipv6"
  ethtool -K $A tx off >/dev/null; ip netns exec $NS ethtool -K $B tx off >/dev/null
  ip link set $A up; ip -n $NS link set $B up
done
A1=nbbA1$$; A2=nbbA2$$; B1=nbbB1$$; NS1=nbb1$$
cat >"$work/udp.cfg" <<EOF
{ eth(da=02:6e:bb:00:ff:ff, sa=02:6e:bb:00:01:0b), ipv4(sa=10.198.1.2, da=10.198.2.2), udp(sp=1234, dp=1234), fill(0x00, $((LEN - 42))) }
EOF

median() { sort -g | awk '$1 > 0 { v[++n] = $1 } END { if (n == 0) print "0"; else print v[int((n + 1) / 2)] }'; }

run_bridge() { # [--copy] BANNER: prints the bridge's median a->b rate over the flood and
  # its CPU time (user + system, all threads) per forwarded frame in ns
  local out="$work/bridge.out"
  "$BR" ${1:-} -i "xdp:$A1" -i "xdp:$A2" >"$out" 2>&1 &
  local br=$!
  for _ in $(seq 2400); do grep -q "^bridge xdp" "$out" && break; sleep 0.05; done
  if ! grep -q "^bridge xdp" "$out"; then
    # Seen on a loaded shared machine: an open stalled for minutes. Show where, skip the run.
    echo "bridge-bench: the bridge did not start within 120 s; run skipped. Its threads:" >&2
    cat "$out" >&2
    for t in /proc/$br/task/*; do echo "  $(cat $t/comm) $(cat $t/stat | cut -d' ' -f3) $(cat $t/wchan)" >&2; done
    command -v gdb >/dev/null && gdb -p $br -batch -ex "thread apply all bt 20" 2>/dev/null | grep -E "^#|^Thread" >&2
    kill -9 $br; wait $br 2>/dev/null || true
    echo "0 0"; return
  fi
  ip netns exec $NS1 timeout "$((SECS + 1))" trafgen -o $B1 -i "$work/udp.cfg" -P 1 -C -Q >/dev/null 2>&1 || true
  local ticks; ticks=$(awk '{ print $14 + $15 }' /proc/$br/stat)
  kill -TERM $br; wait $br 2>/dev/null || true
  grep -q "$2" "$out" || { echo "bridge-bench: expected '$2' in:" >&2; cat "$out" >&2; exit 1; }
  local fwd; fwd=$(sed -n 's/^bridge: forwarded \([0-9]*\) packets a->b.*/\1/p' "$out")
  local rate; rate=$(sed -n 's/^bridge: a->b \([0-9.]*\) Mpps.*/\1/p' "$out" | sed '1d;$d' | median)
  echo "$rate $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="${fwd:-0}" 'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e9 / n; else print 0 }')"
}

declare -A rate cpu
one() { # KIND ARGS BANNER
  local v; v=$(run_bridge "$2" "$3")
  rate[$1,$r]=${v% *}; cpu[$1,$r]=${v#* }
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then
    one copy --copy "copying (separate memory)"; one shared "" "zero copy (shared memory)"
  else
    one shared "" "zero copy (shared memory)"; one copy --copy "copying (separate memory)"
  fi
  echo "round $r: shared ${rate[shared,$r]} Mpps ${cpu[shared,$r]} ns/frame," \
    "copy ${rate[copy,$r]} Mpps ${cpu[copy,$r]} ns/frame"
done
ratios() { # ARRAY A B: per-round A/B
  local -n arr=$1
  for r in $(seq "$ROUNDS"); do
    awk -v a="${arr[$2,$r]}" -v b="${arr[$3,$r]}" 'BEGIN { if (a > 0 && b > 0) printf "%.3f\n", a / b }'
  done
}
med() { local -n arr=$1; for r in $(seq "$ROUNDS"); do echo "${arr[$2,$r]}"; done | median; }
echo
echo "bridge xdp:A1 <-> xdp:A2, $LEN-byte frames, $ROUNDS rounds of ${SECS}s, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
echo "rate (a->b, median of per-second reports): shared $(med rate shared) Mpps, copy $(med rate copy) Mpps;" \
  "shared/copy per round: $(ratios rate shared copy | tr '\n' ' ')-> median $(ratios rate shared copy | median)"
echo "bridge CPU per forwarded frame: shared $(med cpu shared) ns, copy $(med cpu copy) ns;" \
  "copy/shared per round: $(ratios cpu copy shared | tr '\n' ' ')-> median $(ratios cpu copy shared | median)"
