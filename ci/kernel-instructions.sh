#!/usr/bin/env bash
# Instructions per packet of the library's batch path (benches/kernel_loop.rs) and of the
# minimal C loop (ci/bench/nmloop.c) on the real netmap module, counted by callgrind inside
# the QEMU guest of ../shared/netmap-guest (the host's valgrind is copied in). Each count is
# the difference of two runs (51200 and 102400 packets) divided by 51200, so setup and
# teardown drop out; user-space instructions only (the kernel's share of a sync is not
# counted). Unlike rates, the counts repeat from run to run. Not run by CI.
#
#   ci/kernel-instructions.sh        # needs valgrind on the host (apt-get install valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${NETMAP_GUEST_RUN:-../shared/netmap-guest/run}
NG=$(dirname "$RUN")
export CARGO_TERM_COLOR=never
command -v valgrind >/dev/null || { echo "valgrind is not installed on the host"; exit 1; }
payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
loop_bin=$(cargo bench --bench kernel_loop --no-run 2>&1 | sed -n 's/^ *Executable .*(\(.*\))$/\1/p')
cp "$loop_bin" "$payload/kernel_loop"
gcc -O2 -Wall -I"$NG/include" ci/bench/nmloop.c -L"$NG/lib" -lnetmap -o "$payload/nmloop"
vg=$(dirname "$(readlink -f "$(command -v valgrind)")")
cp "$vg/valgrind.bin" "$payload/" 2>/dev/null || cp "$(command -v valgrind)" "$payload/valgrind.bin"
mkdir "$payload/vg"
cp /usr/libexec/valgrind/callgrind-amd64-linux /usr/libexec/valgrind/vgpreload_core-amd64-linux.so \
  /usr/libexec/valgrind/default.supp "$payload/vg/"
cat >"$payload/ir.sh" <<'GUEST'
export VALGRIND_LIB=/payload/vg
ir() { # impl dir n len -> instructions of the whole run
  if [ "$2" = tx ]; then
    pkt-gen -w 0 -i 'netmap:v}1' -f rx -W >/dev/null 2>&1 & pid=$!; sleep 0.3
    ./valgrind.bin --tool=callgrind --callgrind-out-file=cg.out ./$1 tx 'netmap:v{1' $3 $4 >/dev/null 2>&1
    wait $pid
  else
    ./valgrind.bin --tool=callgrind --callgrind-out-file=cg.out ./$1 rx 'netmap:w}1' $3 $4 >/dev/null 2>&1 & pid=$!
    sleep 3
    pkt-gen -w 0 -i 'netmap:w{1' -f tx -l $4 -n $3 >/dev/null 2>&1; wait $pid
  fi
  awk '/^(summary|totals):/ {print $2; exit}' cg.out
}
for impl in nmloop kernel_loop; do for dir in tx rx; do for len in 60 1500; do
  a=$(ir $impl $dir 51200 $len); b=$(ir $impl $dir 102400 $len)
  echo "I $impl $dir $len $(( (b - a) / 51200 ))"
done; done; done
GUEST
NMVM_TIMEOUT=${NMVM_TIMEOUT:-1200} "$RUN" "$payload" 'bash ir.sh' 2>&1 | awk '
  /^I / { v[$2 " " $3 " " $4] = $5 }
  END {
    print "| direction | frame | C loop | library batch path |"
    print "|---|---|---:|---:|"
    split("tx 60,tx 1500,rx 60,rx 1500", k, ",")
    for (i = 1; i <= 4; i++)
      print "| " substr(k[i], 1, 2) " | " substr(k[i], 4) " B | " v["nmloop " k[i]] " | " v["kernel_loop " k[i]] " |"
  }'
