#!/usr/bin/env bash
# Runs the test suite and every example on the real netmap kernel module, in the QEMU guest
# of ../shared/netmap-guest (see its README), and checks the kernel log afterwards.
#
#   ci/kernel-tests.sh                 # NETMAP_GUEST_RUN overrides the guest runner's path
#
# Builds the test binaries and examples (release), copies them into the guest with the
# directory layout tests/examples.rs expects (deps/ and examples/ side by side), sets up a
# veth pair with IPv6 off, runs every test binary with NETMAP_RS_BACKEND=kernel, then fails
# if dmesg shows netmap_ring_reinit, WARNING or BUG. The last line is "N passed, M failed";
# the exit status is 0 only when M is 0.
set -uo pipefail
cd "$(dirname "$0")/.."
RUN=${NETMAP_GUEST_RUN:-../shared/netmap-guest/run}
if [ ! -x "$RUN" ]; then
  echo "kernel tests: guest runner $RUN not found"
  echo "0 passed, 1 failed"
  exit 1
fi
export CARGO_TERM_COLOR=never
target=${CARGO_TARGET_DIR:-target}

echo "== building test binaries and examples (release)"
build_log=$(mktemp)
if ! cargo test --release --no-run >"$build_log" 2>&1 || ! cargo build --release --examples >>"$build_log" 2>&1; then
  cat "$build_log"
  echo "0 passed, 1 failed"
  exit 1
fi
payload=$(mktemp -d)
trap 'rm -rf "$payload" "$build_log" "${log:-}"' EXIT
mkdir -p "$payload/deps" "$payload/examples"
sed -n 's/^ *Executable .*(\(.*\))$/\1/p' "$build_log" | sort -u | while read -r t; do
  cp "$t" "$payload/deps/"
done
for e in examples/*.rs examples/*/main.rs; do
  case $e in */main.rs) name=$(basename "$(dirname "$e")") ;; *) name=$(basename "$e" .rs) ;; esac
  cp "$target/release/examples/$name" "$payload/examples/"
done
cat >"$payload/guest.sh" <<'GUEST'
# Runs in the guest (dash), in /payload.
sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip link add veth0 type veth peer name veth1
ip link set veth0 up && ip link set veth1 up
ip addr add 10.77.0.1/24 dev veth0
ip neigh add 10.77.0.2 lladdr 02:00:00:00:77:02 dev veth0 nud permanent
export NETMAP_RS_TEST_VETH="veth0 veth1 10.77.0.2"
for t in deps/*; do
  echo "=== BINARY $(basename "$t")"
  timeout 300 "$t" --test-threads=1 --nocapture
  echo "=== RC $?"
done
echo "=== DMESG"
# Any WARNING, BUG or complaint of netmap about a ring fails the run, except the one a test
# expects: between its "netmap-rs test begin/end" lines, an RX check whose loads of cur
# and head fell on either side of another thread's publication ('cur < head'), and the
# log-only reinit that follows it (one that resets pointers prints "reinit, cur": a failure).
if dmesg | awk '
    /netmap-rs test begin: / { inside = 1; next }
    /netmap-rs test end: / { inside = 0; next }
    inside && /nm_rxsync_prologue.*fail .cur < head/ { raced++; next }
    inside && /netmap_ring_reinit +called for/ { next }
    /netmap_ring_reinit|_prologue|reinit, cur|bad (index|len)|WARNING|BUG/ { print; bad = 1 }
    END { print "=== RX CHECKS RACED " raced + 0; exit bad }'
then echo "=== DMESG CLEAN"; else echo "=== DMESG BAD"; fi
GUEST
echo "== running $(ls "$payload/deps" | wc -l) test binaries and $(ls "$payload/examples" | wc -l) examples in the netmap guest"
log=$(mktemp)
NMVM_TIMEOUT=${NMVM_TIMEOUT:-900} NMVM_ENV_NETMAP_RS_BACKEND=kernel NMVM_ENV_RUST_BACKTRACE=1 \
  "$RUN" "$payload" 'sh guest.sh' >"$log" 2>&1
guest_rc=$?
cat "$log"
echo
echo "== kernel test summary"
awk -v guest_rc="$guest_rc" '
  /^=== BINARY / { bin = $3; seen = 0; next }
  /^test result: / {
    seen = 1
    for (i = 1; i <= NF; i++) {
      if ($(i + 1) ~ /^passed/) p += $i
      if ($(i + 1) ~ /^failed/) f += $i
    }
    next
  }
  /^=== RC / { if ($3 != 0 && !seen) { print bin ": exited " $3 " without a test result"; f++ } next }
  /SKIPPED |skipped: / {
    i = match($0, /SKIPPED |[a-z_]* ?skipped: /)
    print "skipped on the kernel: " substr($0, i); s++
  }
  /^test .* FAILED$/ { print "failed: " $2 }
  /^=== RX CHECKS RACED / { print "dmesg: " $5 " expected RX checks raced with another thread (test-bracketed, nothing reset)" }
  /^=== DMESG CLEAN/ { print "dmesg: no netmap_ring_reinit, WARNING or BUG"; p++; dm = 1 }
  /^=== DMESG BAD/ { print "dmesg: the kernel logged netmap_ring_reinit, WARNING or BUG (above)"; f++; dm = 1 }
  END {
    if (!dm) { print "the guest did not finish (run exit status " guest_rc ")"; f++ }
    print s + 0 " of the passed tests were skipped on the kernel (reasons above)"
    print p + 0 " passed, " f + 0 " failed"
    exit (f > 0)
  }' "$log"
