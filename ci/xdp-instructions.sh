#!/usr/bin/env bash
# User-space instructions per packet of the one-slot `xdp:` paths (callgrind; the kernel's
# share is not counted), as `benches/instructions.py` counts the emulated ones: the
# `xdp_instr` bench binary receives (rx) or sends (tx) K = 100 and K = 900 60-byte frames on a
# veth pair, and the difference of the two counts is divided by 800. Needs root, valgrind,
# iproute2, ethtool, python3. A measurement, not a test; the counts repeat from run to run.
#
#   ci/xdp-instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "xdp-instructions: needs root (veth, namespaces, AF_XDP)"; exit 1; }
EXE=$(cargo bench --bench xdp_instr --no-run 2>&1 | sed -n 's/.*Executable benches\/xdp_instr.rs (\(.*\))/\1/p')
[ -n "$EXE" ] || { echo "xdp-instructions: could not build the xdp_instr bench"; exit 1; }
A=nmiA$$; B=nmiB$$; NS=nminstr$$
cleanup() { ip link del $A 2>/dev/null || true; ip netns del $NS 2>/dev/null || true; }
trap cleanup EXIT
ip netns add $NS
ip link add $A address 02:6e:c1:00:00:0a type veth peer name $B address 02:6e:c1:00:00:0b netns $NS
echo 1 > /proc/sys/net/ipv6/conf/$A/disable_ipv6
ip netns exec $NS sh -c "echo 1 > /proc/sys/net/ipv6/conf/$B/disable_ipv6"
ethtool -K $A tx off >/dev/null; ip netns exec $NS ethtool -K $B tx off >/dev/null
ip addr add 10.197.0.1/24 dev $A; ip -n $NS addr add 10.197.0.2/24 dev $B
ip link set $A up; ip -n $NS link set $B up
ip -n $NS neigh replace 10.197.0.1 lladdr 02:6e:c1:00:00:0a dev $B nud permanent
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$EXE" "$1" $A $NS 10.197.0.1 "$2" 2>&1 \
  | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
echo "| path | instructions per packet |"
echo "|---|---:|"
for mode in rx tx; do
  lo=$(count $mode 100); hi=$(count $mode 900)
  echo "| $mode | $(python3 -c "print(f'{($hi - $lo) / 800:.1f}')") |"
done
