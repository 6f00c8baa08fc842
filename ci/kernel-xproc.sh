#!/usr/bin/env bash
# Issue-12 comparison, as information: in one boot of the real-netmap guest
# (../shared/netmap-guest), per round, C pkt-gen on a kernel pipe (two processes), then
# pkt_gen on the emulated backend's pipe across two processes and within one (--both).
# Software emulation: compare the ratios of one run, not the rates.
#
#   ROUNDS=3 N=2000000 ci/kernel-xproc.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${NETMAP_GUEST_RUN:-../shared/netmap-guest/run}
ROUNDS=${ROUNDS:-3}
N=${N:-2000000}
target=${CARGO_TARGET_DIR:-target}
payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
cargo build --release --example pkt_gen >/dev/null 2>&1
cp "$target/release/examples/pkt_gen" "$payload/"
cat >"$payload/x.sh" <<GUEST
mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm 2>/dev/null
sp() { awk '/^Speed:/ { v = \$2; u = \$3; if (u ~ /^K/) v /= 1000; print v; exit }' "\$1"; }
for r in \$(seq $ROUNDS); do
  pkt-gen -w 0 -i "netmap:kp\$r}1" -f rx >rx.out 2>&1 & p=\$!; sleep 0.3
  pkt-gen -w 0 -i "netmap:kp\$r{1" -f tx -n $N >tx.out 2>&1; sleep 0.5; kill -INT \$p; wait \$p
  c=\$(sp tx.out)
  NETMAP_RS_BACKEND=emulated ./pkt_gen -i "ex\$r}1" -f rx -n $N >rx.out 2>&1 & p=\$!; sleep 0.3
  NETMAP_RS_BACKEND=emulated ./pkt_gen -i "ex\$r{1" -f tx -n $N >tx.out 2>&1; wait \$p
  grep -q "Received $N packets" rx.out || echo "round \$r: the cross-process receiver missed packets"
  x=\$(sp tx.out)
  NETMAP_RS_BACKEND=emulated ./pkt_gen -i "ei\$r{1" -f tx -n $N --both >tx.out 2>&1
  i=\$(sp tx.out)
  echo "X \$r \$c \$x \$i"
done
GUEST
NMVM_TIMEOUT=900 "$RUN" "$payload" 'bash x.sh' 2>/dev/null | awk '
  /^round / { print }
  /^X / { printf "round %d: C pkt-gen kernel pipe %.3f Mpps, emulated cross-process %.3f, in-process %.3f: cross/in %.2f, cross/C %.2f\n", $2, $3, $4, $5, $4 / $5, $4 / $3 }'
